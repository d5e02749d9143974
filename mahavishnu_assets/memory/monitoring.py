"""Pool monitoring: statistics with health indicators, resizing, diagnostics, idle cleanup, recommendations.

Everything here reports numbers and names, never connection strings: the target is described without its
password and query texts pass through `redact`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from mahavishnu_assets.database.pool import Database
from mahavishnu_assets.errors import ConfigurationError, redact
from mahavishnu_assets.settings import Settings

MB = 1024 * 1024
GB = 1024 * MB
# The PostgreSQL wiki's starting point for active connections: 2 x cores + effective spindles.
SPINDLES = 1


def machine_memory_bytes() -> int:
    """Physical memory of this machine (psutil when installed, else sysconf)."""
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except ImportError:  # pragma: no cover - psutil comes with Dagster
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def machine_cores() -> int:
    return os.cpu_count() or 1


def human_bytes(value: float) -> str:
    for unit, size in (("GB", GB), ("MB", MB), ("kB", 1024)):
        if value >= size:
            return f"{value / size:.0f}{unit}" if value / size >= 10 else f"{value / size:.1f}{unit}"
    return f"{int(value)}B"


def _level(value: float, warn: float, critical: float) -> str:
    return "critical" if value >= critical else "warning" if value >= warn else "ok"


async def get_pool_stats(db: Database) -> dict[str, Any]:
    """The pool's own counters (size, in use, waits, acquire latency, failures, health)."""
    return {"target": db.target.describe(), **db.stats().to_dict()}


async def get_extended_pool_stats(db: Database, settings: Settings) -> dict[str, Any]:
    """Pool counters plus health indicators, each with its value, threshold and ok/warning/critical."""
    stats = db.stats()
    wait_warn = settings.memory.pool_wait_p95_warn_ms
    high = settings.memory.pool_high_utilisation
    wait_ratio = stats.waits / stats.acquires if stats.acquires else 0.0
    indicators = [
        {
            "name": "utilisation",
            "value": stats.utilisation,
            "threshold": high,
            "status": _level(stats.utilisation, high, 1.0),
            "meaning": "connections in use now / pool maximum",
        },
        {
            "name": "avg_utilisation",
            "value": stats.avg_utilisation,
            "threshold": high,
            "status": _level(stats.avg_utilisation, high, 0.95),
            "meaning": "time-weighted connections in use since the pool opened / pool maximum",
        },
        {
            "name": "wait_ratio",
            "value": round(wait_ratio, 4),
            "threshold": 0.05,
            "status": _level(wait_ratio, 0.05, 0.25),
            "meaning": "share of acquires that found every connection busy",
        },
        {
            "name": "acquire_p95_ms",
            "value": stats.acquire_p95_ms,
            "threshold": wait_warn,
            "status": _level(stats.acquire_p95_ms, wait_warn, wait_warn * 10),
            "meaning": "95th percentile time to get a connection",
        },
        {
            "name": "wait_p95_ms",
            "value": stats.wait_p95_ms,
            "threshold": wait_warn,
            "status": _level(stats.wait_p95_ms, wait_warn, wait_warn * 10),
            "meaning": "95th percentile time waited by acquires that had to wait",
        },
        {
            "name": "failures",
            "value": stats.failures,
            "threshold": 1,
            "status": "warning" if stats.failures else "ok",
            "meaning": "acquires that failed (timeouts, refused or lost connections)",
        },
        {
            "name": "healthy",
            "value": stats.healthy,
            "threshold": True,
            "status": "ok" if stats.healthy else "critical",
            "meaning": "the last health check reached the server",
        },
    ]
    statuses = {i["status"] for i in indicators}
    overall = "red" if "critical" in statuses else "yellow" if "warning" in statuses else "green"
    return {
        "target": db.target.describe(),
        **stats.to_dict(),
        "wait_ratio": round(wait_ratio, 4),
        "health": overall,
        "indicators": indicators,
    }


async def server_facts(db: Database) -> dict[str, Any]:
    """The server settings and sizes recommendations depend on, plus who uses its connection slots."""
    app = db.config.application_name
    async with db.connection() as conn:
        row = await conn.fetchrow(
            """SELECT current_setting('max_connections')::int AS max_connections,
                      current_setting('superuser_reserved_connections')::int AS superuser_reserved,
                      coalesce(current_setting('reserved_connections', true), '0')::int AS reserved,
                      pg_size_bytes(current_setting('shared_buffers')) AS shared_buffers,
                      pg_size_bytes(current_setting('work_mem')) AS work_mem,
                      pg_size_bytes(current_setting('maintenance_work_mem')) AS maintenance_work_mem,
                      pg_size_bytes(current_setting('effective_cache_size')) AS effective_cache_size,
                      pg_database_size(current_database()) AS database_bytes,
                      (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend') AS connections,
                      (SELECT count(*) FROM pg_stat_activity
                        WHERE backend_type = 'client backend' AND application_name = $1
                          AND datname = current_database()) AS ours,
                      (SELECT count(*) FROM pg_stat_activity
                        WHERE backend_type = 'client backend' AND application_name = $1
                          AND datname = current_database() AND state <> 'idle'
                          AND pid <> pg_backend_pid()) AS ours_busy""",
            app,
        )
        vectors = await conn.fetchrow(
            """SELECT greatest(c.reltuples, 0)::bigint AS rows,
                      pg_total_relation_size(c.oid) AS bytes,
                      (SELECT max(dimensions) FROM mahavishnu.embedding_spaces) AS dimensions
                 FROM pg_class c WHERE c.oid = to_regclass('mahavishnu.embeddings')"""
        )
    assert row is not None
    facts = dict(row)
    facts["usable_connections"] = max(
        1, facts["max_connections"] - facts["superuser_reserved"] - facts["reserved"]
    )
    facts["embedding_rows"] = int(vectors["rows"]) if vectors else 0
    facts["embedding_bytes"] = int(vectors["bytes"]) if vectors else 0
    facts["dimensions"] = int(vectors["dimensions"]) if vectors and vectors["dimensions"] else None
    return facts


async def adjust_pool_size(
    db: Database, *, min_size: int | None = None, max_size: int | None = None
) -> dict[str, Any]:
    """Resize the pool in place; refuses sizes the server cannot hold."""
    facts = await server_facts(db)
    wanted = db.config.max_size if max_size is None else max_size
    others = facts["connections"] - facts["ours"]
    room = facts["usable_connections"] - others
    if wanted > room:
        raise ConfigurationError(
            f"A pool of {wanted} does not fit: the server allows {facts['usable_connections']} connections and "
            f"{others} are used by other clients",
            suggestion="Choose a smaller max_size or raise the server's max_connections.",
        )
    before = (db.config.min_size, db.config.max_size)
    try:
        config = await db.adjust_pool_size(min_size=min_size, max_size=max_size)
    except ValueError as exc:
        raise ConfigurationError(
            str(exc), suggestion="Use 0 <= min_size <= max_size, max_size >= 1."
        ) from None
    return {
        "before": {"min_size": before[0], "max_size": before[1]},
        "after": {"min_size": config.min_size, "max_size": config.max_size},
        "changed": before != (config.min_size, config.max_size),
    }


async def get_connection_diagnostics(db: Database) -> dict[str, Any]:
    """This application's backends from pg_stat_activity (same database), with a summary by state."""
    app = db.config.application_name
    async with db.connection() as conn:
        rows = await conn.fetch(
            """SELECT pid, usename, state, wait_event_type, wait_event, backend_start, xact_start, query_start,
                      state_change, left(query, 300) AS query, pid = pg_backend_pid() AS is_self,
                      extract(epoch FROM now() - state_change) AS state_seconds,
                      extract(epoch FROM now() - xact_start) AS xact_seconds
                 FROM pg_stat_activity
                WHERE application_name = $1 AND datname = current_database() AND backend_type = 'client backend'
                ORDER BY backend_start, pid""",
            app,
        )
        limits = await conn.fetchrow(
            """SELECT current_setting('max_connections')::int AS max_connections,
                      (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend') AS total"""
        )
    assert limits is not None
    secrets = db.target.secrets()
    connections = [
        {
            "pid": r["pid"],
            "user": r["usename"],
            "state": r["state"],
            "wait_event_type": r["wait_event_type"],
            "wait_event": r["wait_event"],
            "backend_start": r["backend_start"].isoformat() if r["backend_start"] else None,
            "state_seconds": round(float(r["state_seconds"]), 3) if r["state_seconds"] is not None else None,
            "xact_seconds": round(float(r["xact_seconds"]), 3) if r["xact_seconds"] is not None else None,
            "query": redact(r["query"] or "", secrets),
            "is_self": r["is_self"],
        }
        for r in rows
    ]
    by_state: dict[str, int] = {}
    for c in connections:
        by_state[c["state"] or "unknown"] = by_state.get(c["state"] or "unknown", 0) + 1
    return {
        "application_name": app,
        "target": db.target.describe(),
        "connections": connections,
        "by_state": by_state,
        "count": len(connections),
        "idle_in_transaction": by_state.get("idle in transaction", 0),
        "longest_transaction_seconds": max((c["xact_seconds"] or 0.0 for c in connections), default=0.0),
        "server_max_connections": limits["max_connections"],
        "server_connections": limits["total"],
        "pool": db.stats().to_dict(),
    }


async def terminate_idle_connections(
    db: Database,
    *,
    idle_seconds: float | None = None,
    settings: Settings | None = None,
    include_idle_in_transaction: bool = False,
) -> dict[str, Any]:
    """End this application's backends idle for at least `idle_seconds` (never another application's).

    Our own pool replaces the ones it loses on the next acquire. Idle-in-transaction backends hold locks and
    snapshots; they are ended only when asked, which rolls their transaction back.
    """
    if idle_seconds is None:
        idle_seconds = float(settings.memory.idle_connection_seconds) if settings else 600.0
    states = (
        ["idle", "idle in transaction", "idle in transaction (aborted)"]
        if include_idle_in_transaction
        else ["idle"]
    )
    async with db.connection() as conn:
        rows = await conn.fetch(
            """SELECT pid, state, pg_terminate_backend(pid) AS ended
                 FROM pg_stat_activity
                WHERE application_name = $1 AND datname = current_database() AND backend_type = 'client backend'
                  AND pid <> pg_backend_pid() AND state = ANY($2::text[])
                  AND state_change <= now() - make_interval(secs => $3::float8)""",
            db.config.application_name,
            states,
            float(idle_seconds),
        )
    ended = [r["pid"] for r in rows if r["ended"]]
    return {"terminated": len(ended), "pids": ended, "idle_seconds": idle_seconds}


@dataclass(frozen=True)
class Recommendation:
    topic: str
    setting: str
    current: Any
    recommended: Any
    severity: str  # info, warning, critical
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "setting": self.setting,
            "current": self.current,
            "recommended": self.recommended,
            "severity": self.severity,
            "reason": self.reason,
        }


def _pool_recommendation(stats: dict[str, Any], facts: dict[str, Any], cores: int) -> Recommendation:
    current = stats["max_size"]
    peak = stats["peak_in_use"]
    waits, acquires = stats["waits"], stats["acquires"]
    wait_ratio = waits / acquires if acquires else 0.0
    processes = max(1, math.ceil(facts["ours"] / max(current, 1)))
    others = max(0, facts["connections"] - facts["ours"])
    budget = max(1, (facts["usable_connections"] - others) // processes)
    useful = 2 * cores + SPINDLES
    facts_text = (
        f"observed peak {peak} in use of {current}, {waits} of {acquires} acquires waited "
        f"(p95 wait {stats['wait_p95_ms']:.1f} ms); the server allows {facts['usable_connections']} connections, "
        f"{others} used by other clients, about {processes} process(es) of ours share the rest, leaving "
        f"{budget} per pool; with {cores} cores about {useful} queries run truly in parallel"
    )
    if acquires < 20:
        return Recommendation(
            "pool_size",
            "postgres.pool_max_size",
            current,
            current,
            "info",
            f"Too little traffic to judge yet ({acquires} acquires); {facts_text}.",
        )
    if wait_ratio > 0.05 or peak >= current:
        wanted = min(budget, max(current + 1, math.ceil(current * 1.5)))
        severity = "warning" if wait_ratio > 0.05 else "info"
        if wanted <= current:
            return Recommendation(
                "pool_size",
                "postgres.pool_max_size",
                current,
                current,
                "warning",
                f"The pool is saturated but cannot grow: {facts_text}. Raise max_connections on the server or "
                "lower the concurrency of callers.",
            )
        if current >= useful * 2:
            return Recommendation(
                "pool_size",
                "postgres.pool_max_size",
                current,
                current,
                severity,
                f"Callers wait for connections, but {current} already exceeds twice the {useful} queries this "
                f"server runs in parallel, so more connections would queue inside PostgreSQL instead: "
                f"{facts_text}. Reduce caller concurrency or give the server more cores.",
            )
        return Recommendation(
            "pool_size",
            "postgres.pool_max_size",
            current,
            wanted,
            severity,
            f"Callers wait for connections: {facts_text}. A pool of {wanted} removes most waiting and fits the "
            "server's connection budget.",
        )
    if peak <= current // 3 and current > 4:
        wanted = max(2, math.ceil(peak * 1.5))
        return Recommendation(
            "pool_size",
            "postgres.pool_max_size",
            current,
            wanted,
            "info",
            f"The pool is mostly idle: {facts_text}. {wanted} connections cover the peak with headroom and "
            "leave slots to other clients.",
        )
    return Recommendation(
        "pool_size",
        "postgres.pool_max_size",
        current,
        current,
        "info",
        f"The pool size fits the observed load: {facts_text}.",
    )


def _memory_recommendations(facts: dict[str, Any], ram: int, hnsw_m: int) -> list[Recommendation]:
    out: list[Recommendation] = []
    data = int(facts["database_bytes"])
    # shared_buffers: a quarter of RAM is the usual ceiling; a database smaller than that needs only itself
    # plus room to grow.
    quarter = ram // 4
    sb = max(128 * MB, min(quarter, int(data * 1.5)))
    current_sb = int(facts["shared_buffers"])
    severity = "warning" if current_sb < sb // 2 else "info"
    out.append(
        Recommendation(
            "memory",
            "shared_buffers",
            human_bytes(current_sb),
            human_bytes(sb),
            severity,
            f"The machine has {human_bytes(ram)} and the database holds {human_bytes(data)}: "
            f"{'the whole database with room to grow' if sb < quarter else 'a quarter of RAM (the usual ceiling; the OS cache does the rest)'} "
            "keeps vector scans and index pages in PostgreSQL's own cache. Changing it needs a server restart.",
        )
    )
    connections = int(facts["max_connections"])
    wm = int((ram - sb) / (3 * max(connections, 1)))
    wm = max(4 * MB, min(wm, 256 * MB))
    current_wm = int(facts["work_mem"])
    out.append(
        Recommendation(
            "memory",
            "work_mem",
            human_bytes(current_wm),
            human_bytes(wm),
            "warning" if current_wm < wm // 4 else "info",
            f"Each sort or hash of a query may use work_mem, and up to {connections} connections may do so at "
            f"once: ({human_bytes(ram)} RAM - {human_bytes(sb)} shared_buffers) / (3 x {connections}) keeps the "
            "worst case within memory while letting search re-ranking and hash joins stay in memory.",
        )
    )
    rows, dims = facts["embedding_rows"], facts["dimensions"] or 0
    # pgvector's HNSW build is fast only while the graph fits maintenance_work_mem: roughly each vector plus
    # its neighbour lists (2*m links on the bottom layer) and tuple overhead.
    graph = int(rows * (4 * dims + 8 * 2 * hnsw_m + 64)) if dims else 0
    mwm_cap = min(ram // 8, 8 * GB)
    mwm = max(64 * MB, min(int(graph * 1.25), mwm_cap))
    current_mwm = int(facts["maintenance_work_mem"])
    if graph:
        reason = (
            f"An HNSW index over {rows} vectors of {dims} dimensions needs about {human_bytes(graph)} to build "
            "in memory; pgvector builds much faster when that fits maintenance_work_mem"
        )
        if graph * 1.25 > mwm_cap:
            reason += (
                f", but that exceeds 1/8 of RAM ({human_bytes(mwm_cap)}), so the build will spill: expect it to "
                "be slower, or build IVFFlat, which needs far less"
            )
    else:
        reason = "No embeddings yet; the default suffices until an index is built"
    out.append(
        Recommendation(
            "memory",
            "maintenance_work_mem",
            human_bytes(current_mwm),
            human_bytes(mwm),
            "warning" if graph and current_mwm < min(graph, mwm) else "info",
            reason + ". It is also what VACUUM and CREATE INDEX use; set it per session for index builds.",
        )
    )
    ecs = int(ram * 0.75)
    out.append(
        Recommendation(
            "memory",
            "effective_cache_size",
            human_bytes(int(facts["effective_cache_size"])),
            human_bytes(ecs),
            "info",
            f"Tells the planner how much of the {human_bytes(ram)} RAM caches data (shared_buffers plus the OS "
            "cache, about three quarters of RAM), so it prefers index scans that will be served from memory.",
        )
    )
    return out


async def get_pool_recommendations(db: Database, settings: Settings) -> list[dict[str, Any]]:
    """Pool sizing from observed concurrency and the server's limits, and the memory settings this workload
    depends on from the machine's memory and the data size, each with its reasoning in words."""
    facts = await server_facts(db)
    stats = db.stats().to_dict()
    cores = machine_cores()
    ram = machine_memory_bytes()
    out = [_pool_recommendation(stats, facts, cores)]
    slots_used = facts["connections"] / facts["usable_connections"]
    if slots_used >= 0.8:
        out.append(
            Recommendation(
                "connections",
                "max_connections",
                facts["max_connections"],
                int(facts["max_connections"] * 1.5),
                "critical" if slots_used >= 0.95 else "warning",
                f"{facts['connections']} of {facts['usable_connections']} usable connection slots are taken "
                f"({facts['ours']} by this application); new connections will soon be refused. Raise "
                "max_connections (restart needed) or shrink pools and close idle clients.",
            )
        )
    out.extend(_memory_recommendations(facts, ram, settings.index.hnsw_m))
    return [r.to_dict() for r in out]


async def observe_pool(db: Database, settings: Settings) -> dict[str, Any]:
    """The server-side view other processes' pools leave behind, for sensors (which hold no pool of their own).

    `utilisation` is the larger of: the share of this application's connections busy (all busy means every
    pool of ours is saturated) and the share of the server's usable slots in use.
    """
    facts = await server_facts(db)
    others_of_ours = max(0, facts["ours"] - 1)  # this observer's own connection is not load
    busy_share = facts["ours_busy"] / others_of_ours if others_of_ours else 0.0
    slot_share = facts["connections"] / facts["usable_connections"]
    utilisation = round(max(busy_share, slot_share), 4)
    return {
        "utilisation": utilisation,
        "busy_connections": facts["ours_busy"],
        "application_connections": others_of_ours,
        "server_connections": facts["connections"],
        "usable_connections": facts["usable_connections"],
        "high": utilisation >= settings.memory.pool_high_utilisation,
        "threshold": settings.memory.pool_high_utilisation,
    }


async def status_extension(settings: Settings, db: Database) -> dict[str, Any]:
    """For `mahavishnu status`: pool stats with health indicators, and recommendations with reasons."""
    return {
        "pool": await get_extended_pool_stats(db, settings),
        "recommendations": await get_pool_recommendations(db, settings),
    }
