"""Keeping each space's ANN index right: build when needed, rebuild on drift, measure and tune every time.

`refresh_space` is the one routine behind the `ann_index` asset, `mahavishnu index` and the drift sensor;
`rebuild_drifted_indexes` is what the maintenance schedule calls.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import asyncpg

from mahavishnu_assets.database.pool import Database
from mahavishnu_assets.index.build import (
    build_index,
    drop_index,
    drop_invalid_everywhere,
    drop_unusable,
    space_lock,
)
from mahavishnu_assets.index.measure import Measurement, measure
from mahavishnu_assets.index.plan import IndexPlan, choose_plan, index_name, maintenance_work_mem_mb
from mahavishnu_assets.index.queries import RecallQueries, embedder_for_space, matches, recall_queries
from mahavishnu_assets.index.query_log import prune_query_log
from mahavishnu_assets.index.registry import Space, index_facts, live_indexes, spaces, usable_index
from mahavishnu_assets.settings import IndexSettings, Settings

if TYPE_CHECKING:
    from mahavishnu_assets.ingest.embed import Embedder

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decision:
    """Whether a space's index must be (re)built, and why."""

    build: bool
    drop: bool
    reason: str


def drifted(rows_at_build: int, rows_now: int, factor: float) -> bool:
    """Rows grew or shrank past `factor` since the build (IVFFlat centroids and list counts go stale)."""
    if rows_at_build <= 0:
        return rows_now > 0
    return rows_now >= rows_at_build * factor or rows_now <= rows_at_build / factor


def decide(
    plan: IndexPlan,
    facts: dict[str, Any] | None,
    usable: bool,
    settings: IndexSettings,
    *,
    force: bool = False,
) -> Decision:
    """Pure rule: what to do given the plan for today's data and the facts of the last build."""
    if not plan.builds:
        return Decision(False, usable or bool(facts and facts["method"] != "exact"), plan.reason)
    if force:
        return Decision(True, False, "rebuild asked for")
    if facts is None or facts["method"] == "exact" or not usable:
        return Decision(True, False, "no usable index yet")
    if facts["method"] != plan.method:
        return Decision(True, False, f"method changed from {facts['method']} to {plan.method}")
    params = _params(facts)
    if plan.method == "hnsw" and params != plan.params:
        return Decision(True, False, f"HNSW parameters changed from {params} to {plan.params}")
    if plan.method == "ivfflat" and facts.get("lists_rule") != plan.lists_rule:
        return Decision(True, False, f"lists rule changed to {plan.lists_rule}")
    if drifted(int(facts["rows_at_build"]), plan.rows, settings.drift_factor):
        return Decision(
            True,
            False,
            f"rows drifted from {facts['rows_at_build']} to {plan.rows} (drift_factor={settings.drift_factor})",
        )
    return Decision(False, False, "index is current")


def _params(facts: dict[str, Any]) -> dict[str, int]:
    raw = facts.get("params") or {}
    if isinstance(raw, str):
        raw = json.loads(raw)
    return {str(k): int(v) for k, v in raw.items()}


async def refresh_space(
    db: Database,
    settings: Settings,
    space: Space,
    *,
    force: bool = False,
    target_recall: float | None = None,
    embedder: Embedder | None = None,
) -> dict[str, Any]:
    """Build or rebuild the space's index when needed, then measure recall and tune the search parameter.

    Recall is measured on query texts embedded through `embedder` when it makes this space's vectors, else
    through the embedder the settings give for the space (see index/queries.py for the fallback)."""
    cfg = settings.index
    target = target_recall if target_recall is not None else cfg.target_recall
    async with space_lock(db.target, space.id) as conn:
        # Count under the lock: the plan is for the rows the build will see.
        rows = int(
            await conn.fetchval("SELECT count(*) FROM mahavishnu.embeddings WHERE space_id = $1", space.id)
        )
        plan = choose_plan(rows, space.dimensions, cfg)
        facts = await index_facts(conn, space.id)
        usable = await usable_index(conn, space.id) is not None
        decision = decide(plan, facts, usable, cfg, force=force)
        keep = facts["index_name"] if facts and usable else None
        dropped = await drop_unusable(conn, space.id, keep=keep)
        # Sampled before any build: a space whose embedder cannot be reached fails here, not after an hour.
        sample = await _recall_sample(conn, settings, space, embedder) if plan.builds else None
        built = None
        generation = int(facts["generation"]) if facts else 0
        name = keep
        if decision.build:
            generation += 1
            name = index_name(space.id, generation, plan.method or "")
            memory = maintenance_work_mem_mb(plan, cfg.max_maintenance_work_mem_mb)
            built = await build_index(conn, db.target, plan, space.id, name, memory)
            await conn.execute("ANALYZE mahavishnu.embeddings")
            await _record_build(
                conn, space, plan, name, generation, built.seconds, built.maintenance_work_mem, target
            )
            if keep:
                await drop_index(conn, keep)
                dropped.append(keep)
        elif decision.drop:
            if keep:
                await drop_index(conn, keep)
                dropped.append(keep)
            name = None
        if not plan.builds:
            await _record_exact(conn, space, plan, generation, target)
        facts = await index_facts(conn, space.id)
        assert facts is not None
        method_now = facts["method"] if facts["method"] != "exact" else None
        measurement = await measure(
            conn,
            space.id,
            space.dimensions,
            method_now,
            _params(facts),
            target=target,
            sample=cfg.recall_sample_queries,
            index_name=name if method_now else None,
            queries=sample.tune if sample else None,
            heldout=sample.heldout if sample else None,
        )
        await _record_measurement(conn, space.id, measurement, target, sample)
        facts = await index_facts(conn, space.id)
    return _report(
        space,
        plan,
        decision,
        facts,
        dropped,
        measured=True,
        built=built is not None,
        measurement=measurement,
        sample=sample,
    )


async def _recall_sample(
    conn: asyncpg.Connection, settings: Settings, space: Space, given: Embedder | None
) -> RecallQueries:
    """The tuner's and the held-out query vectors, through the given embedder if it is this space's."""
    cfg = settings.index
    await prune_query_log(conn, cfg.query_log_size)
    if given is not None and matches(given, space):
        embedder: Embedder | None = given
        why = ""
    else:
        embedder, why = await embedder_for_space(settings, space)
    try:
        return await recall_queries(
            conn, space, cfg.recall_sample_queries, embedder, why_none=why, log_size=cfg.query_log_size
        )
    finally:
        if embedder is not None and embedder is not given:
            await embedder.aclose()


async def _record_build(
    conn: asyncpg.Connection,
    space: Space,
    plan: IndexPlan,
    name: str,
    generation: int,
    seconds: float,
    memory: str,
    target: float,
) -> None:
    await conn.execute(
        """INSERT INTO mahavishnu.vector_indexes AS a
               (space_id, method, index_name, generation, params, lists_rule, reason, dimensions, rows_at_build,
                build_seconds, maintenance_work_mem, target_recall, built_at,
                search_param, search_value, recall_at_10, measured_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, now(), NULL, NULL, NULL, NULL)
           ON CONFLICT (space_id) DO UPDATE SET
               method = EXCLUDED.method, index_name = EXCLUDED.index_name, generation = EXCLUDED.generation,
               params = EXCLUDED.params, lists_rule = EXCLUDED.lists_rule, reason = EXCLUDED.reason,
               dimensions = EXCLUDED.dimensions, rows_at_build = EXCLUDED.rows_at_build,
               build_seconds = EXCLUDED.build_seconds, maintenance_work_mem = EXCLUDED.maintenance_work_mem,
               target_recall = EXCLUDED.target_recall, built_at = EXCLUDED.built_at,
               search_param = NULL, search_value = NULL, recall_at_10 = NULL, measured_at = NULL,
               recall_queries = NULL, heldout_recall_at_10 = NULL, heldout_queries = NULL""",
        space.id,
        plan.method,
        name,
        generation,
        plan.params,
        plan.lists_rule,
        plan.reason,
        space.dimensions,
        plan.rows,
        round(seconds, 3),
        memory,
        target,
    )


async def _record_exact(
    conn: asyncpg.Connection, space: Space, plan: IndexPlan, generation: int, target: float
) -> None:
    await conn.execute(
        """INSERT INTO mahavishnu.vector_indexes AS a
               (space_id, method, index_name, generation, params, lists_rule, reason, dimensions, rows_at_build,
                target_recall, built_at, build_seconds, maintenance_work_mem)
           VALUES ($1, 'exact', NULL, $2, '{}'::jsonb, NULL, $3, $4, $5, $6, NULL, NULL, NULL)
           ON CONFLICT (space_id) DO UPDATE SET
               method = 'exact', index_name = NULL, generation = EXCLUDED.generation, params = '{}'::jsonb,
               lists_rule = NULL, reason = EXCLUDED.reason, dimensions = EXCLUDED.dimensions,
               rows_at_build = EXCLUDED.rows_at_build, target_recall = EXCLUDED.target_recall,
               built_at = NULL, build_seconds = NULL, maintenance_work_mem = NULL,
               search_param = NULL, search_value = NULL""",
        space.id,
        generation,
        plan.reason,
        space.dimensions,
        plan.rows,
        target,
    )


async def _record_measurement(
    conn: asyncpg.Connection, space_id: int, m: Measurement, target: float, sample: RecallQueries | None
) -> None:
    ann = m.ann
    await conn.execute(
        """UPDATE mahavishnu.vector_indexes SET
               search_param = $2, search_value = $3, recall_at_10 = $4, sample_queries = $5,
               exact_p50_ms = $6, exact_p99_ms = $7, exact_qps = $8,
               ann_p50_ms = $9, ann_p99_ms = $10, ann_qps = $11, target_recall = $12, measured_at = now(),
               recall_queries = $13, heldout_recall_at_10 = $14, heldout_queries = $15
           WHERE space_id = $1""",
        space_id,
        m.search_param,
        m.search_value,
        m.recall_at_10,
        m.exact.queries,
        m.exact.p50_ms,
        m.exact.p99_ms,
        m.exact.qps,
        ann.p50_ms if ann else None,
        ann.p99_ms if ann else None,
        ann.qps if ann else None,
        target,
        sample.source if sample else None,
        m.heldout_recall_at_10,
        m.heldout_queries or None,
    )


def _report(
    space: Space,
    plan: IndexPlan,
    decision: Decision,
    facts: dict[str, Any] | None,
    dropped: list[str],
    *,
    measured: bool,
    built: bool = False,
    measurement: Measurement | None = None,
    sample: RecallQueries | None = None,
) -> dict[str, Any]:
    f = facts or {}
    method = f.get("method") or "exact"
    out: dict[str, Any] = {
        "space_id": space.id,
        "space": space.describe(),
        "method": method,
        "index": f.get("index_name"),
        "params": _params(f) if f else {},
        "lists_rule": f.get("lists_rule"),
        "rows": plan.rows,
        "rows_at_build": f.get("rows_at_build"),
        "built": built,
        "reason": decision.reason
        if decision.build or method == "exact"
        else f.get("reason") or decision.reason,
        "build_seconds": f.get("build_seconds") if built else None,
        "last_build_seconds": f.get("build_seconds"),
        "maintenance_work_mem": f.get("maintenance_work_mem"),
        "target_recall": f.get("target_recall"),
        "recall_at_10": f.get("recall_at_10") if method != "exact" else 1.0,
        # Recall at the tuned setting on queries the tuner never saw: the check of the figure above.
        "heldout_recall_at_10": f.get("heldout_recall_at_10") if method != "exact" else None,
        "heldout_queries": f.get("heldout_queries"),
        "recall_queries": f.get("recall_queries"),
        "search_params": {f["search_param"]: f["search_value"]} if f.get("search_param") else {},
        "exact_p50_ms": f.get("exact_p50_ms"),
        "exact_p99_ms": f.get("exact_p99_ms"),
        "exact_qps": f.get("exact_qps"),
        "ann_p50_ms": f.get("ann_p50_ms"),
        "ann_p99_ms": f.get("ann_p99_ms"),
        "ann_qps": f.get("ann_qps"),
        "sample_queries": f.get("sample_queries"),
        "dropped": dropped,
        "measured": measured,
    }
    if measurement is not None:
        out["speedup"] = measurement.speedup
        out["tried"] = [{"value": v, "recall": r, "recall_lower_bound": lb} for v, r, lb in measurement.tried]
    out["query_kinds"] = {"tune": sample.tune_kinds, "heldout": sample.heldout_kinds} if sample else {}
    out["notices"] = list(sample.notices) if sample else []
    return out


async def refresh_all(db: Database, settings: Settings, **kwargs: Any) -> list[dict[str, Any]]:
    """`refresh_space` for every space holding vectors."""
    async with db.connection() as conn:
        found = [s for s in await spaces(conn) if s.rows > 0]
    return [await refresh_space(db, settings, s, **kwargs) for s in found]


async def needs_attention(db: Database, settings: Settings) -> list[tuple[Space, Decision]]:
    """Spaces whose index is missing, drifted, outdated by the settings, or should be dropped."""
    out = []
    async with db.connection() as conn:
        for s in await spaces(conn):
            plan = choose_plan(s.rows, s.dimensions, settings.index)
            facts = await index_facts(conn, s.id)
            if facts is None and not plan.builds:
                continue  # never built, nothing to build: exact search, nothing to record
            decision = decide(plan, facts, await usable_index(conn, s.id) is not None, settings.index)
            if decision.build or decision.drop:
                out.append((s, decision))
    return out


async def rebuild_drifted_indexes(db: Database, settings: Settings) -> list[dict]:
    """Drop invalid leftovers, then (re)build every space whose index is missing or drifted; what was done.

    A space whose build is running elsewhere is skipped (reported with `skipped`), not waited for.
    """
    from mahavishnu_assets.errors import AnnIndexError

    done: list[dict] = []
    for name in await drop_invalid_everywhere(db.target):
        done.append({"action": "dropped_leftover", "index": name})
    for s, decision in await needs_attention(db, settings):
        try:
            report = await refresh_space(db, settings, s)
        except AnnIndexError as exc:
            done.append({"action": "skipped", "space_id": s.id, "reason": exc.message})
            continue
        action = "rebuilt" if report["built"] else "dropped" if report["method"] == "exact" else "checked"
        done.append({"action": action, "space_id": s.id, "why": decision.reason, **_brief(report)})
    return done


def _brief(report: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "index",
        "method",
        "params",
        "rows",
        "recall_at_10",
        "heldout_recall_at_10",
        "search_params",
        "build_seconds",
    )
    return {k: report[k] for k in keys}


async def index_status(db: Database) -> list[dict[str, Any]]:
    """Every recorded index with its live validity, for `mahavishnu status` and the checks."""
    from mahavishnu_assets.index.registry import all_index_facts

    async with db.connection() as conn:
        facts = await all_index_facts(conn)
        live = {i.name: i for i in await live_indexes(conn)}
        counts = {s.id: s.rows for s in await spaces(conn)}
    out = []
    for f in facts:
        index = live.get(f["index_name"]) if f["index_name"] else None
        out.append(
            {
                "space_id": f["space_id"],
                "space": f"{f['provider']}:{f['model']}/{f['dimensions']}",
                "method": f["method"],
                "index": f["index_name"],
                "valid": index.valid if index else f["method"] == "exact",
                "params": _params(f),
                "rows": counts.get(f["space_id"], 0),
                "rows_at_build": f["rows_at_build"],
                "recall_at_10": f["recall_at_10"],
                "heldout_recall_at_10": f["heldout_recall_at_10"],
                "recall_queries": f["recall_queries"],
                "target_recall": f["target_recall"],
                "search_params": {f["search_param"]: f["search_value"]} if f["search_param"] else {},
                "ann_qps": f["ann_qps"],
                "exact_qps": f["exact_qps"],
                "ann_p50_ms": f["ann_p50_ms"],
                "ann_p99_ms": f["ann_p99_ms"],
                "build_seconds": f["build_seconds"],
                "built_at": f["built_at"].isoformat() if f["built_at"] else None,
                "measured_at": f["measured_at"].isoformat() if f["measured_at"] else None,
            }
        )
    return out


async def invalid_indexes(db: Database) -> list[str]:
    """`ann_*` indexes left INVALID by a build that did not finish (and is not running now)."""
    async with db.connection() as conn:
        return [i.name for i in await live_indexes(conn) if not i.valid and not i.building]


async def status_extension(settings: Settings, db: Database) -> dict[str, Any]:
    """`mahavishnu status`: the ANN index of every space, with its measured recall and speed."""
    return {"indexes": await index_status(db), "invalid_ann_indexes": await invalid_indexes(db)}
