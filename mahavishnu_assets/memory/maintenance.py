"""Maintenance: expired cache entries and inactive sessions out, snapshot retention, VACUUM (ANALYZE), bloat
figures, and ANN index rebuilds when the index's drift rule asks for one."""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

from mahavishnu_assets.database.pool import Database
from mahavishnu_assets.memory.monitoring import terminate_idle_connections
from mahavishnu_assets.memory.snapshots import SnapshotManager, ident
from mahavishnu_assets.memory.store import MemoryStore
from mahavishnu_assets.settings import Settings

logger = logging.getLogger(__name__)

# Tables whose rows churn: deletes and updates leave dead tuples behind that VACUUM reclaims.
HOT_TABLES = (
    "cache_entries",
    "sessions",
    "memories",
    "chunks",
    "embeddings",
    "source_files",
    "repositories",
    "performance_metrics",
    "memory_snapshots",
    "snap_chunks",
    "snap_embeddings",
    "snap_memories",
    "snap_source_files",
)


async def table_health(db: Database, tables: tuple[str, ...] = HOT_TABLES) -> list[dict[str, Any]]:
    """Live and dead tuples, an estimate of the space dead tuples take, and when each table was last vacuumed."""
    async with db.connection() as conn:
        rows = await conn.fetch(
            """SELECT s.relname AS table, s.n_live_tup AS live, s.n_dead_tup AS dead,
                      pg_table_size(s.relid) AS table_bytes, pg_indexes_size(s.relid) AS index_bytes,
                      s.last_vacuum, s.last_autovacuum, s.last_analyze, s.last_autoanalyze
                 FROM pg_stat_user_tables s
                WHERE s.schemaname = 'mahavishnu' AND s.relname = ANY($1::text[])
                ORDER BY s.relname""",
            list(tables),
        )
    out = []
    for r in rows:
        live, dead = int(r["live"]), int(r["dead"])
        ratio = dead / (live + dead) if live + dead else 0.0
        last_vacuum = max((t for t in (r["last_vacuum"], r["last_autovacuum"]) if t), default=None)
        out.append(
            {
                "table": r["table"],
                "live_tuples": live,
                "dead_tuples": dead,
                "dead_ratio": round(ratio, 4),
                "table_bytes": int(r["table_bytes"]),
                "index_bytes": int(r["index_bytes"]),
                # Dead tuples' share of the heap: what VACUUM can make reusable.
                "bloat_bytes_estimate": int(int(r["table_bytes"]) * ratio),
                "last_vacuum": last_vacuum.isoformat() if last_vacuum else None,
            }
        )
    return out


async def vacuum_analyze(db: Database, tables: tuple[str, ...] = HOT_TABLES) -> list[dict[str, Any]]:
    """VACUUM (ANALYZE) each table on its own: it cannot run inside a transaction block."""
    done = []
    async with db.connection() as conn:
        existing = {
            r["relname"]
            for r in await conn.fetch(
                "SELECT relname FROM pg_stat_user_tables WHERE schemaname = 'mahavishnu' AND relname = ANY($1)",
                list(tables),
            )
        }
        for table in tables:
            if table not in existing:
                continue
            started = time.perf_counter()
            await conn.execute(f"VACUUM (ANALYZE) mahavishnu.{ident(table)}")
            done.append({"table": table, "seconds": round(time.perf_counter() - started, 4)})
    return done


async def rebuild_ann_indexes(db: Database, settings: Settings) -> list[dict[str, Any]]:
    """Rebuild the ANN indexes the index domain's drift rule flags (mahavishnu_assets.index.maintenance)."""
    try:
        from mahavishnu_assets.index.maintenance import rebuild_drifted_indexes
    except ImportError:
        # The index domain is optional at import time; without it there is nothing to rebuild.
        logger.warning("mahavishnu_assets.index.maintenance is not available: ANN index rebuild skipped")
        return []
    return list(await rebuild_drifted_indexes(db, settings))


async def prune_metrics(db: Database, settings: Settings, *, now: datetime | None = None) -> int:
    async with db.connection() as conn:
        status = await conn.execute(
            """DELETE FROM mahavishnu.performance_metrics
                WHERE recorded_at < coalesce($1::timestamptz, now()) - make_interval(days => $2)""",
            now,
            settings.memory.metrics_retention_days,
        )
    return int(status.split()[-1])


async def expired_backlog(db: Database, settings: Settings) -> dict[str, Any]:
    """How many rows cleanup would remove now, and the oldest of them (for the cleanup sensor)."""
    async with db.connection() as conn:
        row = await conn.fetchrow(
            """SELECT (SELECT count(*) FROM mahavishnu.cache_entries WHERE expires_at <= now()) AS cache,
                      (SELECT min(expires_at) FROM mahavishnu.cache_entries WHERE expires_at <= now()) AS cache_oldest,
                      (SELECT count(*) FROM mahavishnu.sessions
                        WHERE expires_at <= now()
                           OR last_active_at <= now() - make_interval(secs => $1::float8)) AS sessions,
                      (SELECT min(least(expires_at, last_active_at)) FROM mahavishnu.sessions
                        WHERE expires_at <= now()
                           OR last_active_at <= now() - make_interval(secs => $1::float8)) AS sessions_oldest""",
            float(settings.memory.session_inactive_seconds),
        )
    assert row is not None
    oldest = min((t for t in (row["cache_oldest"], row["sessions_oldest"]) if t), default=None)
    return {
        "expired_cache_entries": int(row["cache"]),
        "removable_sessions": int(row["sessions"]),
        "total": int(row["cache"]) + int(row["sessions"]),
        "oldest": oldest.isoformat() if oldest else None,
    }


async def run_maintenance(
    db: Database,
    settings: Settings,
    *,
    vacuum: bool = True,
    rebuild_indexes: bool = True,
    terminate_idle: bool = True,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Clean up, apply retention, vacuum and rebuild; returns counts of everything removed or rebuilt.

    `terminate_idle` also ends this application's connections idle longer than memory.idle_connection_seconds
    (leaked by crashed processes); pools reconnect on demand.
    """
    started = time.perf_counter()
    store = MemoryStore(db, settings)
    cache_removed = await store.cache_cleanup_expired(now=now)
    sessions_removed = await store.session_cleanup_inactive(now=now)
    snapshots_removed = await SnapshotManager(db, settings).cleanup(now=now)
    metrics_removed = await prune_metrics(db, settings, now=now)
    idle = await terminate_idle_connections(db, settings=settings) if terminate_idle else {"terminated": 0}
    async with db.connection() as conn:
        # Statistics reach pg_stat_user_tables asynchronously; make this session's deletes count now.
        await conn.execute("SELECT pg_stat_force_next_flush()")
    before = await table_health(db)
    vacuumed = await vacuum_analyze(db) if vacuum else []
    after = await table_health(db) if vacuum else before
    indexes = await rebuild_ann_indexes(db, settings) if rebuild_indexes else []
    report = {
        "cache_entries_removed": cache_removed,
        "sessions_removed": sessions_removed,
        "snapshots_removed": len(snapshots_removed),
        "snapshot_ids_removed": [s["id"] for s in snapshots_removed],
        "metrics_removed": metrics_removed,
        "idle_connections_terminated": idle["terminated"],
        "tables_vacuumed": len(vacuumed),
        "vacuum": vacuumed,
        "dead_tuples_before": sum(t["dead_tuples"] for t in before),
        "dead_tuples_after": sum(t["dead_tuples"] for t in after),
        "bloat_bytes_estimate": sum(t["bloat_bytes_estimate"] for t in before),
        "tables": after,
        "indexes_rebuilt": sum(1 for i in indexes if i.get("action") == "rebuilt"),
        "index_actions": indexes,
        "seconds": round(time.perf_counter() - started, 3),
    }
    async with db.connection() as conn:
        await conn.executemany(
            "INSERT INTO mahavishnu.performance_metrics (metric, value, labels) VALUES ($1, $2, $3)",
            [
                (f"maintenance.{k}", float(report[k]), {})
                for k in (
                    "cache_entries_removed",
                    "sessions_removed",
                    "snapshots_removed",
                    "dead_tuples_before",
                    "indexes_rebuilt",
                    "seconds",
                )
            ],
        )
    logger.info(
        "Maintenance: %s cache entries, %s sessions, %s snapshots removed; %s tables vacuumed; %s indexes rebuilt",
        cache_removed,
        sessions_removed,
        len(snapshots_removed),
        len(vacuumed),
        report["indexes_rebuilt"],
    )
    return report
