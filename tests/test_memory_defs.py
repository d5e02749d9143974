"""Memory assets materialized by Dagster on a real database; sensors against an ephemeral instance; the
schedules' run requests. Dagster runs its own event loop, so these tests are synchronous."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import asyncpg
import pytest
from dagster import (
    AssetKey,
    DagsterInstance,
    SensorResult,
    build_schedule_context,
    build_sensor_context,
    materialize,
)

from mahavishnu_assets.database.pool import connect
from mahavishnu_assets.database.target import ConnectTarget
from mahavishnu_assets.defs import memory as memory_defs
from mahavishnu_assets.defs.resources import PostgresResource


@pytest.fixture
def env(database: ConnectTarget, settings_dir, monkeypatch: pytest.MonkeyPatch) -> ConnectTarget:
    monkeypatch.setenv("MAHAVISHNU_DATABASE_URL", database.libpq_url().get_secret_value())
    return database


def sql(target: ConnectTarget, *statements: str) -> list:
    async def run() -> list:
        conn = await connect(target)
        try:
            return [await conn.fetchval(s) for s in statements]
        finally:
            await conn.close()

    return asyncio.run(run())


def test_definitions_hold_the_memory_domain() -> None:
    from mahavishnu_assets.definitions import defs

    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"memory_snapshot", "memory_maintenance", "pool_health_report"} <= keys
    assert {s.name for s in defs.sensors} >= {"pool_health_sensor", "memory_cleanup_sensor"}
    assert {s.name for s in defs.schedules} >= {
        "memory_snapshot_daily",
        "memory_hourly_cleanup",
        "memory_nightly_maintenance",
    }
    defs.resolve_job_def("memory_maintenance_job")


def test_snapshot_asset_is_one_snapshot_per_day(env: ConnectTarget) -> None:
    sql(env, "INSERT INTO mahavishnu.memories (memory_type, content) VALUES ('agent', 'one') RETURNING id")
    for expected_created in (True, False):
        result = materialize(
            [memory_defs.memory_snapshot],
            partition_key="2026-11-22",
            resources={"postgres": PostgresResource()},
        )
        assert result.success
        meta = result.asset_materializations_for_node("memory_snapshot")[0].metadata
        assert meta["created"].value is expected_created
        assert meta["total_rows"].value == 1
    names = sql(env, "SELECT string_agg(name || ':' || partition_key, ',') FROM mahavishnu.memory_snapshots")
    assert names == ["daily-2026-11-22:2026-11-22"]


def test_maintenance_asset_reports_what_it_did(env: ConnectTarget) -> None:
    sql(
        env,
        "INSERT INTO mahavishnu.cache_entries (key, value, expires_at) "
        "SELECT 'k' || g, '1', now() - interval '1 minute' FROM generate_series(1, 25) g RETURNING 1",
        "INSERT INTO mahavishnu.cache_entries (key, value) VALUES ('keep', '2') RETURNING 1",
        "INSERT INTO mahavishnu.sessions (id, token_hash, owner, expires_at) "
        "VALUES (gen_random_uuid(), 'x'::bytea, 'o', now() - interval '1 second') RETURNING 1",
    )
    result = materialize(
        [memory_defs.memory_maintenance],
        resources={"postgres": PostgresResource()},
        run_config=memory_defs.maintenance_run_config(
            {"vacuum": True, "rebuild_indexes": False, "terminate_idle": False}
        ),
    )
    assert result.success
    meta = result.asset_materializations_for_node("memory_maintenance")[0].metadata
    assert meta["cache_entries_removed"].value == 25
    assert meta["sessions_removed"].value == 1
    assert meta["tables_vacuumed"].value >= 5
    assert meta["dead_tuples_before"].value >= 26
    assert "cache_entries" in meta["tables"].value
    assert sql(env, "SELECT string_agg(key, ',') FROM mahavishnu.cache_entries") == ["keep"]


def test_pool_health_report_asset(env: ConnectTarget) -> None:
    result = materialize([memory_defs.pool_health_report], resources={"postgres": PostgresResource()})
    assert result.success
    meta = result.asset_materializations_for_node("pool_health_report")[0].metadata
    assert meta["health"].value in ("green", "yellow", "red")
    assert "shared_buffers" in meta["recommendations"].value


def _evaluate(sensor, instance: DagsterInstance, cursor: str | None) -> SensorResult:  # type: ignore[no-untyped-def]
    result = sensor(build_sensor_context(instance=instance, cursor=cursor))
    assert isinstance(result, SensorResult)
    return result


def test_pool_health_sensor_observes_and_requests_maintenance_when_high(
    env: ConnectTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAHAVISHNU_MEMORY__POOL_HIGH_TICKS", "2")
    instance = DagsterInstance.ephemeral()
    sensor = memory_defs.pool_health_sensor

    quiet = _evaluate(sensor, instance, None)
    assert not quiet.run_requests
    observation = quiet.asset_events[0]
    assert observation.asset_key == AssetKey("pool_health_report")
    assert "shared_buffers" in observation.metadata["recommendations"].value

    async def hold_busy() -> list[asyncpg.Connection]:
        conns = [
            await asyncpg.connect(**env.connect_kwargs(), server_settings={"application_name": "mahavishnu"})
            for _ in range(3)
        ]
        for conn in conns:
            await conn.execute("BEGIN")
            await conn.execute("SELECT 1")  # idle in transaction: a connection taken and not given back
        return conns

    loop = asyncio.new_event_loop()
    busy = loop.run_until_complete(hold_busy())
    try:
        first = _evaluate(sensor, instance, quiet.cursor)
        assert not first.run_requests and json.loads(first.cursor)["streak"] == 1
        assert first.asset_events[0].metadata["utilisation"].value >= 0.8
        second = _evaluate(sensor, instance, first.cursor)
        assert len(second.run_requests) == 1
        request = second.run_requests[0]
        assert request.run_key == "pool-pressure:2"
        assert request.run_config == memory_defs.maintenance_run_config(memory_defs.FULL)
        # The same tick evaluated again (same cursor) asks for the same run: Dagster runs it once.
        again = _evaluate(sensor, instance, first.cursor)
        assert [r.run_key for r in again.run_requests] == [request.run_key]
        # Still high next tick: no second request for the same streak.
        third = _evaluate(sensor, instance, second.cursor)
        assert not third.run_requests
    finally:
        for conn in busy:
            loop.run_until_complete(conn.close())
        loop.close()
    calm = _evaluate(sensor, instance, third.cursor)
    assert not calm.run_requests and json.loads(calm.cursor)["streak"] == 0


def test_cleanup_sensor_requests_cleanup_past_the_threshold(
    env: ConnectTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAHAVISHNU_MEMORY__CLEANUP_EXPIRED_THRESHOLD", "10")
    instance = DagsterInstance.ephemeral()
    sensor = memory_defs.memory_cleanup_sensor
    sql(
        env,
        "INSERT INTO mahavishnu.cache_entries (key, value, expires_at) "
        "SELECT 'k' || g, '1', timestamptz '2026-01-01' + g * interval '1 second' FROM generate_series(1, 6) g "
        "RETURNING 1",
        "INSERT INTO mahavishnu.sessions (id, token_hash, owner, expires_at) SELECT gen_random_uuid(), "
        "('t' || g)::bytea, 'o', timestamptz '2026-01-01 00:00:30' FROM generate_series(1, 3) g RETURNING 1",
    )
    below = _evaluate(sensor, instance, None)
    assert not below.run_requests and "9 expired rows" in str(below.skip_reason)
    sql(
        env,
        "INSERT INTO mahavishnu.cache_entries (key, value, expires_at) VALUES ('late', '1', now()) RETURNING 1",
    )
    over = _evaluate(sensor, instance, below.cursor)
    assert len(over.run_requests) == 1
    request = over.run_requests[0]
    assert request.run_key == "cleanup:2026-01-01T00:00:01+00:00#0"
    assert request.run_config == memory_defs.maintenance_run_config(memory_defs.CLEANUP_ONLY)
    repeat = _evaluate(sensor, instance, over.cursor)
    assert [r.run_key for r in repeat.run_requests] == [request.run_key]
    # A backlog that outlives many ticks gets a fresh key: the first run may have failed.
    cursor = repeat.cursor
    for _ in range(memory_defs.CLEANUP_RETRY_TICKS):
        cursor = _evaluate(sensor, instance, cursor).cursor
    assert json.loads(cursor)["attempt"] == 1


def test_schedules_request_deterministic_runs() -> None:
    from mahavishnu_assets.definitions import defs

    when = datetime(2026, 11, 22, 3, 30, tzinfo=UTC)
    nightly = memory_defs.memory_nightly_maintenance(build_schedule_context(scheduled_execution_time=when))
    assert nightly.run_key == "nightly-maintenance:2026-11-22"
    assert nightly.run_config == memory_defs.maintenance_run_config(memory_defs.FULL)
    hourly = memory_defs.memory_hourly_cleanup(
        build_schedule_context(scheduled_execution_time=datetime(2026, 11, 22, 14, 5, tzinfo=UTC))
    )
    assert hourly.run_key == "hourly-cleanup:2026-11-22T14:05Z"
    assert hourly.run_config["ops"]["memory_maintenance"]["config"]["vacuum"] is False
    daily = defs.resolve_schedule_def("memory_snapshot_daily")
    assert daily.cron_schedule == "15 2 * * *"
    ctx = build_schedule_context(scheduled_execution_time=datetime(2026, 11, 22, 2, 15, tzinfo=UTC))
    requests = daily.evaluate_tick(ctx).run_requests
    assert requests and requests[0].partition_key == "2026-11-22"  # end_offset=1: the day it runs on
    # The run configs are valid for the job they target.
    job = defs.resolve_job_def("memory_maintenance_job")
    for config in (nightly.run_config, hourly.run_config):
        assert job.run_config_schema.config_type is not None
        from dagster._config import process_config

        assert process_config(job.run_config_schema.config_type, config).success
