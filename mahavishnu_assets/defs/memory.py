"""Memory operations in Dagster: daily snapshots, maintenance, the pool health report, their sensors and schedules."""

# No `from __future__ import annotations`: Dagster inspects the real type hints of asset functions.

import asyncio
import json
from typing import Any

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetObservation,
    Config,
    DailyPartitionsDefinition,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    MaterializeResult,
    MetadataValue,
    RunRequest,
    ScheduleEvaluationContext,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    asset,
    build_schedule_from_partitioned_job,
    define_asset_job,
    schedule,
    sensor,
)

from mahavishnu_assets.database.pool import Database
from mahavishnu_assets.database.server import open_database
from mahavishnu_assets.defs.resources import PostgresResource
from mahavishnu_assets.memory import monitoring
from mahavishnu_assets.memory.maintenance import expired_backlog, run_maintenance
from mahavishnu_assets.memory.snapshots import SnapshotManager
from mahavishnu_assets.settings import Settings, load_settings

GROUP = "memory"
SNAPSHOT_PARTITIONS = DailyPartitionsDefinition(start_date="2026-01-01", timezone="UTC", end_offset=1)
# Cleanup-only maintenance (hourly, and when expired rows pile up): no VACUUM, no index work.
CLEANUP_ONLY = {"vacuum": False, "rebuild_indexes": False, "terminate_idle": False}
FULL = {"vacuum": True, "rebuild_indexes": True, "terminate_idle": True}
# A cleanup run whose backlog is still there after this many ticks is requested again (it may have failed).
CLEANUP_RETRY_TICKS = 12


class MaintenanceConfig(Config):
    vacuum: bool = True
    rebuild_indexes: bool = True
    terminate_idle: bool = True


def maintenance_run_config(values: dict[str, bool]) -> dict[str, Any]:
    return {"ops": {"memory_maintenance": {"config": dict(values)}}}


def _md_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _recommendations_md(recs: list[dict[str, Any]]) -> str:
    return _md_table(
        ["setting", "current", "recommended", "severity", "why"],
        [[r["setting"], r["current"], r["recommended"], r["severity"], r["reason"]] for r in recs],
    )


@asset(
    group_name=GROUP,
    partitions_def=SNAPSHOT_PARTITIONS,
    deps=["pgvector_schema"],
    description="A daily point-in-time snapshot of the memory and the corpus (rows shared with earlier ones).",
)
async def memory_snapshot(context: AssetExecutionContext, postgres: PostgresResource) -> MaterializeResult:
    day = context.partition_key
    name = f"daily-{day}"
    manager = SnapshotManager(postgres.db, postgres.settings)
    existing = await manager.list_all(name=name, limit=1)
    if existing:
        # A re-run of the day keeps that day's snapshot: it cannot capture the past again.
        snap, created = existing[0], False
        context.log.info("Snapshot %s for %s already exists", snap["id"], day)
    else:
        snap, created = await manager.create(name, partition_key=day), True
    stats = snap["stats"]
    return MaterializeResult(
        metadata={
            "snapshot_id": MetadataValue.int(snap["id"]),
            "created": MetadataValue.bool(created),
            "total_rows": MetadataValue.int(int(stats.get("total_rows", 0))),
            "shared_rows": MetadataValue.int(int(stats.get("shared_rows", 0))),
            "new_versions": MetadataValue.int(sum(stats.get("new_versions", {}).values())),
            "seconds": MetadataValue.float(float(stats.get("seconds", 0.0))),
            "rows": MetadataValue.md(
                _md_table(
                    ["table", "rows", "new versions"],
                    [
                        [t, n, stats.get("new_versions", {}).get(t, 0)]
                        for t, n in stats.get("rows", {}).items()
                    ],
                )
            ),
        }
    )


@asset(
    group_name=GROUP,
    deps=["pgvector_schema"],
    description="Expired cache entries and inactive sessions removed, snapshot retention, VACUUM (ANALYZE), "
    "dead-tuple figures, and ANN index rebuilds when the drift rule asks.",
)
async def memory_maintenance(
    context: AssetExecutionContext, config: MaintenanceConfig, postgres: PostgresResource
) -> MaterializeResult:
    report = await run_maintenance(
        postgres.db,
        postgres.settings,
        vacuum=config.vacuum,
        rebuild_indexes=config.rebuild_indexes,
        terminate_idle=config.terminate_idle,
    )
    tables = [
        [t["table"], t["live_tuples"], t["dead_tuples"], t["dead_ratio"], t["bloat_bytes_estimate"]]
        for t in report["tables"]
    ]
    return MaterializeResult(
        metadata={
            "cache_entries_removed": MetadataValue.int(report["cache_entries_removed"]),
            "sessions_removed": MetadataValue.int(report["sessions_removed"]),
            "snapshots_removed": MetadataValue.int(report["snapshots_removed"]),
            "metrics_removed": MetadataValue.int(report["metrics_removed"]),
            "idle_connections_terminated": MetadataValue.int(report["idle_connections_terminated"]),
            "tables_vacuumed": MetadataValue.int(report["tables_vacuumed"]),
            "dead_tuples_before": MetadataValue.int(report["dead_tuples_before"]),
            "dead_tuples_after": MetadataValue.int(report["dead_tuples_after"]),
            "bloat_bytes_estimate": MetadataValue.int(report["bloat_bytes_estimate"]),
            "indexes_rebuilt": MetadataValue.int(report["indexes_rebuilt"]),
            "index_actions": MetadataValue.json(report["index_actions"]),
            "seconds": MetadataValue.float(report["seconds"]),
            "tables": MetadataValue.md(
                _md_table(["table", "live", "dead", "dead ratio", "bloat bytes"], tables)
            ),
        }
    )


@asset(
    group_name=GROUP,
    deps=["pgvector_schema"],
    description="Pool statistics with health indicators, server connection use, and sizing and memory "
    "recommendations with their reasons.",
)
async def pool_health_report(context: AssetExecutionContext, postgres: PostgresResource) -> MaterializeResult:
    db, settings = postgres.db, postgres.settings
    extended = await monitoring.get_extended_pool_stats(db, settings)
    observed = await monitoring.observe_pool(db, settings)
    recs = await monitoring.get_pool_recommendations(db, settings)
    return MaterializeResult(
        metadata={
            "health": MetadataValue.text(extended["health"]),
            "utilisation": MetadataValue.float(float(observed["utilisation"])),
            "busy_connections": MetadataValue.int(int(observed["busy_connections"])),
            "server_connections": MetadataValue.int(int(observed["server_connections"])),
            "usable_connections": MetadataValue.int(int(observed["usable_connections"])),
            "warnings": MetadataValue.int(sum(1 for r in recs if r["severity"] != "info")),
            "recommendations": MetadataValue.md(_recommendations_md(recs)),
            "indicators": MetadataValue.json(extended["indicators"]),
        }
    )


memory_maintenance_job = define_asset_job(
    "memory_maintenance_job", selection=[memory_maintenance], description="Memory cleanup and maintenance."
)
memory_snapshot_job = define_asset_job(
    "memory_snapshot_job", selection=[memory_snapshot], partitions_def=SNAPSHOT_PARTITIONS
)

memory_snapshot_schedule = build_schedule_from_partitioned_job(
    memory_snapshot_job,
    name="memory_snapshot_daily",
    hour_of_day=2,
    minute_of_hour=15,
    default_status=DefaultScheduleStatus.RUNNING,
)


@schedule(
    name="memory_hourly_cleanup",
    cron_schedule="5 * * * *",
    job=memory_maintenance_job,
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.RUNNING,
)
def memory_hourly_cleanup(context: ScheduleEvaluationContext) -> RunRequest:
    when = context.scheduled_execution_time
    return RunRequest(
        run_key=f"hourly-cleanup:{when:%Y-%m-%dT%H:%M}Z",
        run_config=maintenance_run_config(CLEANUP_ONLY),
        tags={"mahavishnu/maintenance": "cleanup"},
    )


@schedule(
    name="memory_nightly_maintenance",
    cron_schedule="30 3 * * *",
    job=memory_maintenance_job,
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.RUNNING,
)
def memory_nightly_maintenance(context: ScheduleEvaluationContext) -> RunRequest:
    when = context.scheduled_execution_time
    return RunRequest(
        run_key=f"nightly-maintenance:{when:%Y-%m-%d}",
        run_config=maintenance_run_config(FULL),
        tags={"mahavishnu/maintenance": "full"},
    )


async def _with_db(settings: Settings, work: Any) -> Any:
    # Sensors hold no pool of their own between ticks: one small pool per evaluation.
    db: Database = await open_database(settings, migrate=False, min_size=0, max_size=1)
    try:
        return await work(db)
    finally:
        await db.close()


def _cursor(context: SensorEvaluationContext, default: dict[str, Any]) -> dict[str, Any]:
    try:
        loaded = json.loads(context.cursor) if context.cursor else {}
    except json.JSONDecodeError:
        loaded = {}
    return {**default, **(loaded if isinstance(loaded, dict) else {})}


@sensor(
    name="pool_health_sensor",
    job=memory_maintenance_job,
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="Records pool health and recommendations as observations of pool_health_report, and requests "
    "maintenance when utilisation stays high for memory.pool_high_ticks ticks.",
)
def pool_health_sensor(context: SensorEvaluationContext) -> SensorResult:
    settings = load_settings()

    async def observe(db: Database) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        return await monitoring.observe_pool(db, settings), await monitoring.get_pool_recommendations(
            db, settings
        )

    observed, recs = asyncio.run(_with_db(settings, observe))
    state = _cursor(context, {"tick": 0, "streak": 0, "streak_start": None, "requested": None})
    tick = int(state["tick"]) + 1
    if observed["high"]:
        streak, start = int(state["streak"]) + 1, state["streak_start"] or tick
    else:
        streak, start = 0, None
    observation = AssetObservation(
        asset_key=AssetKey("pool_health_report"),
        metadata={
            "utilisation": MetadataValue.float(float(observed["utilisation"])),
            "busy_connections": MetadataValue.int(int(observed["busy_connections"])),
            "server_connections": MetadataValue.int(int(observed["server_connections"])),
            "high_streak": MetadataValue.int(streak),
            "recommendations": MetadataValue.md(_recommendations_md(recs)),
        },
    )
    requests = []
    requested = state["requested"]
    if streak >= settings.memory.pool_high_ticks:
        # One run per streak of high ticks; the key comes from the cursor, so a repeated tick asks for the same run.
        run_key = f"pool-pressure:{start}"
        if requested != run_key:
            requests.append(
                RunRequest(
                    run_key=run_key,
                    run_config=maintenance_run_config(FULL),
                    tags={"mahavishnu/maintenance": "pool-pressure"},
                )
            )
            requested = run_key
    cursor = json.dumps({"tick": tick, "streak": streak, "streak_start": start, "requested": requested})
    return SensorResult(run_requests=requests, asset_events=[observation], cursor=cursor)


@sensor(
    name="memory_cleanup_sensor",
    job=memory_maintenance_job,
    minimum_interval_seconds=300,
    default_status=DefaultSensorStatus.RUNNING,
    description="Requests cleanup when expired cache entries and removable sessions pass "
    "memory.cleanup_expired_threshold.",
)
def memory_cleanup_sensor(context: SensorEvaluationContext) -> SensorResult:
    settings = load_settings()
    backlog = asyncio.run(_with_db(settings, lambda db: expired_backlog(db, settings)))
    state = _cursor(context, {"base": None, "attempt": 0, "ticks": 0})
    threshold = settings.memory.cleanup_expired_threshold
    if backlog["total"] < threshold:
        return SensorResult(
            skip_reason=SkipReason(f"{backlog['total']} expired rows, below the threshold of {threshold}"),
            cursor=json.dumps({"base": None, "attempt": 0, "ticks": 0}),
        )
    # The oldest expired row names the backlog: the same backlog keeps its run key, a new one gets a new key.
    base = f"cleanup:{backlog['oldest']}"
    if base == state["base"]:
        ticks = int(state["ticks"]) + 1
        attempt = int(state["attempt"])
        if (
            ticks >= CLEANUP_RETRY_TICKS
        ):  # still there long after the request: that run did not finish the job
            attempt, ticks = attempt + 1, 0
    else:
        ticks, attempt = 0, 0
    run_key = f"{base}#{attempt}"
    request = RunRequest(
        run_key=run_key,
        run_config=maintenance_run_config(CLEANUP_ONLY),
        tags={"mahavishnu/maintenance": "cleanup", "mahavishnu/expired_rows": str(backlog["total"])},
    )
    return SensorResult(
        run_requests=[request], cursor=json.dumps({"base": base, "attempt": attempt, "ticks": ticks})
    )


ASSETS = [memory_snapshot, memory_maintenance, pool_health_report]
CHECKS: list = []
JOBS = [memory_maintenance_job, memory_snapshot_job]
SENSORS = [pool_health_sensor, memory_cleanup_sensor]
SCHEDULES = [memory_snapshot_schedule, memory_hourly_cleanup, memory_nightly_maintenance]
