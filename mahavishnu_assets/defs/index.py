"""The ANN index in Dagster: one asset for every embedding space, blocking recall and validity checks, a drift
sensor.

One unpartitioned asset handles all embedding spaces rather than a partition per space: spaces appear at run
time (a new model, a new size), each space's index depends on every repository partition upstream (a
many-to-many mapping Dagster cannot express between two dynamic partition sets), and there are few spaces. Each
space still gets its own numeric metadata (`space_<id>/recall_at_10`, ...), so the UI plots every space's
recall and speed over time; the unprefixed figures are those of the largest space. Recall is measured on
query texts embedded through the space's embedder (the `ollama` resource's settings), and checked on held-out
queries at the tuned setting (`heldout_recall_at_10`).
"""

# No `from __future__ import annotations`: Dagster inspects the real type hints of asset functions.

import asyncio
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetSelection,
    Config,
    DefaultSensorStatus,
    MaterializeResult,
    MetadataValue,
    RunRequest,
    SensorEvaluationContext,
    SkipReason,
    asset,
    asset_check,
    define_asset_job,
    sensor,
)
from pydantic import Field

from mahavishnu_assets.defs.ingestion import embedded_chunks
from mahavishnu_assets.defs.resources import OllamaResource, PostgresResource
from mahavishnu_assets.index.maintenance import index_status, invalid_indexes, needs_attention, refresh_all
from mahavishnu_assets.index.plan import choose_plan
from mahavishnu_assets.index.registry import spaces, usable_index
from mahavishnu_assets.settings import load_settings

# Check names (constants: the UI, alerts and tests refer to them).
RECALL_MEETS_TARGET = "ann_recall_meets_target"
INDEX_PRESENT_AND_VALID = "ann_index_present_and_valid"
JOB_NAME = "ann_index_job"
SENSOR_NAME = "ann_index_drift_sensor"
# How far below the target the held-out recall may fall before the recall check fails (the tuner's sample
# and held-out queries agree within this on real code; benchmarks/index_recall.py).
HELDOUT_TOLERANCE = 0.03

_NUMBERS = (
    "rows",
    "recall_at_10",
    "heldout_recall_at_10",
    "heldout_queries",
    "target_recall",
    "exact_p50_ms",
    "exact_p99_ms",
    "exact_qps",
    "ann_p50_ms",
    "ann_p99_ms",
    "ann_qps",
    "speedup",
    "build_seconds",
    "last_build_seconds",
)


class AnnIndexConfig(Config):
    force_rebuild: bool = Field(default=False, description="Rebuild every space's index even if current.")
    target_recall: float | None = Field(
        default=None, gt=0, le=1, description="Tune to this recall@10 instead of index.target_recall."
    )


def _numbers(report: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in _NUMBERS:
        value = report.get(key)
        if isinstance(value, bool) or value is None:
            continue
        out[prefix + key] = (
            MetadataValue.float(float(value)) if isinstance(value, float) else MetadataValue.int(value)
        )
    for name, value in (report.get("search_params") or {}).items():
        out[prefix + name] = MetadataValue.int(int(value))
    for name, value in (report.get("params") or {}).items():
        out[prefix + name] = MetadataValue.int(int(value))
    return out


def _table(reports: list[dict[str, Any]]) -> str:
    lines = [
        "| space | method | params | rows | recall@10 | held-out recall@10 | queries | search | ANN QPS | "
        "exact QPS | build s | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in reports:
        params = ", ".join(f"{k}={v}" for k, v in (r["params"] or {}).items())
        search = ", ".join(f"{k}={v}" for k, v in (r["search_params"] or {}).items())
        lines.append(
            f"| {r['space']} | {r['method']} | {params} | {r['rows']} | {r['recall_at_10']} | "
            f"{r.get('heldout_recall_at_10') or ''} | {r.get('recall_queries') or ''} | {search} | "
            f"{r['ann_qps'] or ''} | {r['exact_qps'] or ''} | {r['last_build_seconds'] or ''} | {r['reason']} |"
        )
    return "\n".join(lines)


@asset(
    deps=[embedded_chunks],
    group_name="index",
    description="An ANN index (IVFFlat or HNSW, chosen from the data) per embedding space, rebuilt on drift, "
    "with recall@10 measured against exact search and the search parameter tuned to the target recall.",
)
async def ann_index(
    context: AssetExecutionContext, config: AnnIndexConfig, postgres: PostgresResource, ollama: OllamaResource
) -> MaterializeResult:
    # The embedder settings of the resource: recall queries are embedded as ingestion embedded the chunks.
    settings = ollama.effective_settings(postgres.settings)
    reports = await refresh_all(
        postgres.db, settings, force=config.force_rebuild, target_recall=config.target_recall
    )
    for r in reports:
        for notice in r.get("notices", []):
            context.log.warning("%s", notice)
        context.log.info(
            "Space %s: %s %s over %d rows, recall@10 %s (held-out %s) with %s (%s)",
            r["space"],
            r["method"],
            r["params"],
            r["rows"],
            r["recall_at_10"],
            r.get("heldout_recall_at_10"),
            r["search_params"],
            r["reason"],
        )
    metadata: dict[str, Any] = {
        "spaces": MetadataValue.int(len(reports)),
        "indexes": MetadataValue.md(_table(reports) if reports else "no embeddings yet: nothing to index"),
        "built_now": MetadataValue.int(sum(1 for r in reports if r["built"])),
    }
    if reports:
        main = max(reports, key=lambda r: (r["rows"], -r["space_id"]))
        metadata.update(_numbers(main))
        metadata["method"] = MetadataValue.text(main["method"])
        metadata["space"] = MetadataValue.text(main["space"])
        metadata["reason"] = MetadataValue.text(main["reason"])
        # "text": query texts through the embedder; "stored_vectors": the announced fallback.
        metadata["recall_queries"] = MetadataValue.text(main.get("recall_queries") or "none")
        for r in reports:
            metadata.update(_numbers(r, prefix=f"space_{r['space_id']}/"))
    return MaterializeResult(metadata=metadata)


@asset_check(  # type: ignore[arg-type]  # Dagster runs async checks; its stubs say sync
    asset=ann_index,
    name=RECALL_MEETS_TARGET,
    blocking=True,
    description="Every ANN index reaches its target recall@10 against exact search with its tuned parameter, "
    f"and its held-out recall is no more than {HELDOUT_TOLERANCE} below the target.",
)
async def ann_recall_meets_target(postgres: PostgresResource) -> AssetCheckResult:
    rows = [r for r in await index_status(postgres.db) if r["method"] != "exact"]
    missing = [r for r in rows if r["recall_at_10"] is None]
    low = [r for r in rows if r["recall_at_10"] is not None and r["recall_at_10"] < r["target_recall"]]
    problems = [f"{r['space']}: recall@10 {r['recall_at_10']} < target {r['target_recall']}" for r in low]
    problems += [f"{r['space']}: recall never measured" for r in missing]
    # The tuner's sample can be unlike the queries that matter; held-out queries say so.
    heldout = [r for r in rows if r["heldout_recall_at_10"] is not None]
    problems += [
        f"{r['space']}: held-out recall@10 {r['heldout_recall_at_10']} < target {r['target_recall']} - "
        f"{HELDOUT_TOLERANCE}"
        for r in heldout
        if r["heldout_recall_at_10"] < r["target_recall"] - HELDOUT_TOLERANCE
    ]
    return AssetCheckResult(
        passed=not problems,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "problems": MetadataValue.md("\n".join(f"- {p}" for p in problems) or "none"),
            "indexes": MetadataValue.int(len(rows)),
            "min_recall_at_10": MetadataValue.float(
                float(min((r["recall_at_10"] for r in rows if r["recall_at_10"] is not None), default=1.0))
            ),
            "min_heldout_recall_at_10": MetadataValue.float(
                float(min((r["heldout_recall_at_10"] for r in heldout), default=1.0))
            ),
        },
    )


@asset_check(  # type: ignore[arg-type]  # Dagster runs async checks; its stubs say sync
    asset=ann_index,
    name=INDEX_PRESENT_AND_VALID,
    blocking=True,
    description="Every space large enough for an index has a valid one, and no INVALID ann_* index is left.",
)
async def ann_index_present_and_valid(postgres: PostgresResource) -> AssetCheckResult:
    settings = postgres.settings
    problems: list[str] = []
    async with postgres.db.connection() as conn:
        found = await spaces(conn)
        for s in found:
            plan = choose_plan(s.rows, s.dimensions, settings.index)
            if plan.builds and await usable_index(conn, s.id) is None:
                problems.append(
                    f"{s.describe()}: {s.rows} rows need an index ({plan.method}) and have none valid"
                )
    invalid = await invalid_indexes(postgres.db)
    problems += [f"INVALID index {name} (an interrupted build)" for name in invalid]
    return AssetCheckResult(
        passed=not problems,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "problems": MetadataValue.md("\n".join(f"- {p}" for p in problems) or "none"),
            "spaces": MetadataValue.int(len(found)),
            "invalid_indexes": MetadataValue.int(len(invalid)),
        },
    )


ann_index_job = define_asset_job(JOB_NAME, selection=AssetSelection.assets(ann_index))


async def _attention() -> list[tuple[int, int, str]]:
    """(space id, generation, why) of spaces whose index must be built, rebuilt or dropped."""
    from mahavishnu_assets.database.pool import Database, PoolConfig
    from mahavishnu_assets.database.server import ensure_database, resolve_target
    from mahavishnu_assets.index.registry import index_facts

    settings = load_settings()
    target = await asyncio.to_thread(resolve_target, settings)
    await ensure_database(target)
    db = await Database(target, PoolConfig(min_size=1, max_size=2)).open()
    try:
        async with db.connection() as conn:
            if not await conn.fetchval("SELECT to_regclass('mahavishnu.vector_indexes') IS NOT NULL"):
                return []
        out = []
        for s, decision in await needs_attention(db, settings):
            async with db.connection() as conn:
                facts = await index_facts(conn, s.id)
            out.append((s.id, int(facts["generation"]) if facts else 0, decision.reason))
        return out
    finally:
        await db.close()


@sensor(
    name=SENSOR_NAME,
    target=ann_index_job,
    minimum_interval_seconds=300,
    default_status=DefaultSensorStatus.STOPPED,
    description="Requests an ann_index run when a space's index is missing, or its rows drifted past "
    "index.drift_factor since the build.",
)
def ann_index_drift_sensor(context: SensorEvaluationContext) -> RunRequest | SkipReason:
    todo = asyncio.run(_attention())
    if not todo:
        return SkipReason("Every ANN index is current")
    # One request per state of the spaces: a repeated tick dedups; after a rebuild the generation moves on.
    key = ";".join(f"{space}@g{generation}" for space, generation, _ in sorted(todo))
    context.log.info("ANN indexes need work: %s", [why for _, _, why in todo])
    return RunRequest(run_key=f"ann-index:{key}", tags={"mahavishnu/reason": todo[0][2][:200]})


ASSETS = [ann_index]
CHECKS = [ann_recall_meets_target, ann_index_present_and_valid]
JOBS = [ann_index_job]
SENSORS = [ann_index_drift_sensor]
SCHEDULES: list = []
