"""Pool monitoring on real PostgreSQL: stats and health indicators, resizing, diagnostics, idle cleanup,
recommendations; and no password anywhere in what they report."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from pydantic import SecretStr

from mahavishnu_assets.database.pool import Database, PoolConfig
from mahavishnu_assets.database.target import ConnectTarget
from mahavishnu_assets.errors import ConfigurationError
from mahavishnu_assets.memory import monitoring
from mahavishnu_assets.settings import Settings

PASSWORD = "s3cret-Pa55-word"


@pytest.fixture
async def app_db(database: ConnectTarget) -> AsyncIterator[Database]:
    """A pool with its own application name and a password (the test server trusts local connections, so
    the password is carried everywhere a real one would be, without being needed)."""
    target = ConnectTarget(
        database.host, database.port, database.database, database.user, SecretStr(PASSWORD), "external"
    )
    app = f"mv-test-{uuid.uuid4().hex[:8]}"
    db = await Database(target, PoolConfig(min_size=1, max_size=3, application_name=app)).open()
    yield db
    await db.close()


async def _load(db: Database, tasks: int, seconds: float) -> None:
    async def one() -> None:
        async with db.connection() as conn:
            await conn.execute("SELECT pg_sleep($1)", seconds)

    await asyncio.gather(*(one() for _ in range(tasks)))


def _no_password(*payloads: object) -> None:
    text = json.dumps(payloads, default=str)
    assert PASSWORD not in text


async def test_stats_and_health_indicators(app_db: Database) -> None:
    settings = Settings()
    stats = await monitoring.get_pool_stats(app_db)
    assert stats["max_size"] == 3 and stats["healthy"] is True
    await _load(app_db, 9, 0.05)  # three times the pool: six acquires must wait
    extended = await monitoring.get_extended_pool_stats(app_db, settings)
    assert extended["acquires"] >= 9
    assert extended["waits"] >= 6
    assert extended["peak_in_use"] == 3
    assert extended["wait_p95_ms"] >= 30  # a waiter waits for a 50 ms query to finish
    assert 0 < extended["avg_utilisation"] <= 1
    indicators = {i["name"]: i for i in extended["indicators"]}
    assert indicators["wait_ratio"]["status"] == "critical"
    assert indicators["healthy"]["status"] == "ok"
    assert extended["health"] == "red"
    assert all(isinstance(i["meaning"], str) for i in extended["indicators"])
    _no_password(stats, extended)


async def test_adjust_pool_size_in_place(app_db: Database) -> None:
    app = app_db.config.application_name
    result = await monitoring.adjust_pool_size(app_db, max_size=6)
    assert result == {
        "before": {"min_size": 1, "max_size": 3},
        "after": {"min_size": 1, "max_size": 6},
        "changed": True,
    }

    seen: list[int] = []

    async def busy() -> None:
        async with app_db.connection() as conn:
            await conn.execute("SELECT pg_sleep(0.3)")

    async def count() -> None:
        await asyncio.sleep(0.15)
        async with app_db.connection() as conn:
            seen.append(
                await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND state = 'active'",
                    app,
                )
            )

    await asyncio.gather(*(busy() for _ in range(5)), count())
    assert seen[0] == 6  # five sleepers plus the counter: more than the old maximum of 3
    assert app_db.stats().resizes == 1
    await monitoring.adjust_pool_size(app_db, min_size=0, max_size=1)
    async with app_db.connection() as conn:
        assert await conn.fetchval("SELECT 1") == 1
    assert (app_db.config.min_size, app_db.config.max_size) == (0, 1)
    with pytest.raises(ConfigurationError, match="does not fit"):
        await monitoring.adjust_pool_size(app_db, max_size=100_000)
    with pytest.raises(ConfigurationError):
        await monitoring.adjust_pool_size(app_db, min_size=5, max_size=2)


async def test_diagnostics_list_only_this_application(app_db: Database, database: ConnectTarget) -> None:
    stranger = await asyncpg.connect(
        **database.connect_kwargs(), server_settings={"application_name": "stranger"}
    )
    try:
        diagnostics = await monitoring.get_connection_diagnostics(app_db)
    finally:
        await stranger.close()
    assert diagnostics["application_name"] == app_db.config.application_name
    assert diagnostics["count"] >= 1
    assert any(c["is_self"] for c in diagnostics["connections"])
    assert all(c["user"] == database.user for c in diagnostics["connections"])
    assert "stranger" not in json.dumps(diagnostics, default=str)
    assert diagnostics["server_max_connections"] >= diagnostics["server_connections"] > 0
    _no_password(diagnostics)


async def closed_by_server(conn: asyncpg.Connection, seconds: float = 5.0) -> None:
    """Wait for the goodbye of a backend the server just terminated: pg_terminate_backend returns before the
    backend exits, and a query sent before its last message arrives races asyncpg's protocol state
    (InternalClientError "another operation is in progress") instead of meeting a closed connection."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not conn.is_closed() and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)


async def test_terminate_idle_only_ours_and_the_pool_recovers(
    app_db: Database, database: ConnectTarget
) -> None:
    app = app_db.config.application_name
    ours = [
        await asyncpg.connect(**database.connect_kwargs(), server_settings={"application_name": app})
        for _ in range(2)
    ]
    stranger = await asyncpg.connect(
        **database.connect_kwargs(), server_settings={"application_name": "stranger"}
    )
    in_tx = await asyncpg.connect(**database.connect_kwargs(), server_settings={"application_name": app})
    await in_tx.execute("BEGIN")
    await in_tx.execute("SELECT 1")
    await asyncio.sleep(0.2)
    try:
        result = await monitoring.terminate_idle_connections(app_db, idle_seconds=0.1)
        # The two idle strangers-to-the-pool plus the pool's own idle connection; never the other
        # application's, never the one idle in a transaction unless asked.
        assert result["terminated"] >= 2
        assert await stranger.fetchval("SELECT 1") == 1
        assert await in_tx.fetchval("SELECT 2") == 2
        for conn in ours:
            await closed_by_server(conn)
            with pytest.raises(
                (
                    asyncpg.exceptions.AdminShutdownError,
                    asyncpg.exceptions.ConnectionDoesNotExistError,
                    asyncpg.exceptions.InterfaceError,
                )
            ):
                await conn.fetchval("SELECT 1")
        # The pool lost its idle connection too, and the next operation still succeeds.
        async with app_db.connection() as conn:
            assert await conn.fetchval("SELECT 3") == 3
        await asyncio.sleep(0.2)
        more = await monitoring.terminate_idle_connections(
            app_db, idle_seconds=0.1, include_idle_in_transaction=True
        )
        assert more["terminated"] >= 1
        with pytest.raises(Exception):  # noqa: B017 - any disconnect error will do
            await in_tx.fetchval("SELECT 1")
    finally:
        for conn in [*ours, stranger, in_tx]:
            conn.terminate()


async def test_recommendations_have_reasons_and_react_to_load(app_db: Database) -> None:
    settings = Settings()
    quiet = await monitoring.get_pool_recommendations(app_db, settings)
    by_setting = {r["setting"]: r for r in quiet}
    assert {"postgres.pool_max_size", "shared_buffers", "work_mem", "maintenance_work_mem"} <= set(by_setting)
    assert "Too little traffic" in by_setting["postgres.pool_max_size"]["reason"]
    for rec in quiet:
        assert rec["severity"] in ("info", "warning", "critical")
        assert len(rec["reason"].split()) >= 8  # reasoning in words, not a bare number
    assert (
        "RAM" in by_setting["shared_buffers"]["reason"] or "machine" in by_setting["shared_buffers"]["reason"]
    )

    await _load(app_db, 30, 0.02)  # 30 callers through 3 connections: most wait
    busy = {r["setting"]: r for r in await monitoring.get_pool_recommendations(app_db, settings)}
    pool = busy["postgres.pool_max_size"]
    assert pool["current"] == 3
    assert pool["recommended"] > 3 or "parallel" in pool["reason"]
    assert "waited" in pool["reason"]
    _no_password(quiet, busy)


async def test_recommendations_for_index_builds_use_the_data_size(app_db: Database) -> None:
    async with app_db.connection() as conn:
        await conn.execute(
            "INSERT INTO mahavishnu.embedding_spaces (provider, model, dimensions) VALUES ('t', 'm', 768)"
        )
        await conn.execute("ANALYZE mahavishnu.embeddings")
    facts = await monitoring.server_facts(app_db)
    facts = {**facts, "embedding_rows": 2_000_000, "dimensions": 768}
    recs = {r.setting: r for r in monitoring._memory_recommendations(facts, 24 * monitoring.GB, 16)}
    mwm = recs["maintenance_work_mem"]
    assert "2000000 vectors of 768 dimensions" in mwm.reason
    assert "spill" in mwm.reason  # ~6.4 GB of graph does not fit 1/8 of 24 GB
    small = {
        r.setting: r
        for r in monitoring._memory_recommendations(
            {**facts, "embedding_rows": 10_000}, 24 * monitoring.GB, 16
        )
    }
    assert "spill" not in small["maintenance_work_mem"].reason


async def test_observe_pool_sees_saturation_from_outside(app_db: Database, database: ConnectTarget) -> None:
    settings = Settings()
    app = app_db.config.application_name
    idle = await monitoring.observe_pool(app_db, settings)
    assert idle["high"] is False
    busy = [
        await asyncpg.connect(**database.connect_kwargs(), server_settings={"application_name": app})
        for _ in range(3)
    ]
    try:
        for conn in busy:
            await conn.execute("BEGIN")
            await conn.execute("SELECT 1")
        seen = await monitoring.observe_pool(app_db, settings)
    finally:
        for conn in busy:
            conn.terminate()
    assert seen["busy_connections"] == 3
    assert seen["utilisation"] >= 0.75 and seen["high"] is True


async def test_status_extension_shape(app_db: Database) -> None:
    extra = await monitoring.status_extension(Settings(), app_db)
    assert set(extra) == {"pool", "recommendations"}
    assert extra["pool"]["health"] in ("green", "yellow", "red")
    assert isinstance(extra["recommendations"], list) and extra["recommendations"]
    _no_password(extra)
