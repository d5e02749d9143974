"""Recovery on a private embedded server: a PostgreSQL restart, terminated backends, full connection limits.

Waits here are bounded loops on a condition (health turns green), never timing assertions.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
from pydantic import SecretStr

from mahavishnu_assets.database.embedded import EmbeddedOptions, EmbeddedServer
from mahavishnu_assets.database.pool import Database, PoolConfig, connect
from mahavishnu_assets.database.server import ensure_database
from mahavishnu_assets.database.target import ConnectTarget
from mahavishnu_assets.errors import DatabaseUnavailableError, PoolExhaustedError
from mahavishnu_assets.memory import monitoring
from mahavishnu_assets.settings import Settings

MAX_CONNECTIONS = 12
PASSWORD = "never-show-this-pw"


@pytest.fixture(scope="module")
def private_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    server = EmbeddedServer(
        tmp_path_factory.mktemp("recovery"),
        EmbeddedOptions(max_connections=MAX_CONNECTIONS, shared_buffers="32MB"),
    )
    server.start()
    yield server
    server.stop(mode="immediate")


@pytest.fixture
async def target(private_server: EmbeddedServer) -> AsyncIterator[ConnectTarget]:
    if not private_server.is_running():
        await asyncio.to_thread(private_server.start)
    base = private_server.target("recovery")
    await ensure_database(base)
    yield ConnectTarget(base.host, base.port, base.database, base.user, SecretStr(PASSWORD), "embedded")


async def _until_healthy(db: Database, within: float = 30.0) -> float:
    started = time.monotonic()
    while True:
        report = await db.health_check(timeout=2.0)
        if report.healthy:
            return time.monotonic() - started
        assert time.monotonic() - started < within, f"not healthy after {within}s: {report.error}"
        await asyncio.sleep(0.2)


async def test_pool_survives_a_server_restart(private_server: EmbeddedServer, target: ConnectTarget) -> None:
    db = await Database(
        target, PoolConfig(min_size=3, max_size=4, connect_timeout=3, acquire_timeout=5)
    ).open()
    try:
        db.start_health_loop(interval=0.2)
        async with db.connection() as conn:
            before = await conn.fetchval("SELECT pg_postmaster_start_time()")
        await asyncio.to_thread(private_server.stop, "fast")
        # While it is down, calls fail fast with our error, not a hang, and without the password.
        with pytest.raises(DatabaseUnavailableError) as info:
            for _ in range(5):  # idle connections are traded in until one needs a real connect
                async with db.connection() as conn:
                    await conn.fetchval("SELECT 1")
        assert PASSWORD not in str(info.value.to_dict())
        await asyncio.to_thread(private_server.start)
        # The very next operations succeed: dead idle connections are replaced on acquire.
        for _ in range(6):
            async with db.connection() as conn:
                after = await conn.fetchval("SELECT pg_postmaster_start_time()")
        assert after > before
        await _until_healthy(db)
        stats = await monitoring.get_extended_pool_stats(db, Settings())
        assert stats["healthy"] is True and stats["health"] in ("green", "yellow")
        assert PASSWORD not in str(stats)
    finally:
        await db.close()


async def test_pool_survives_terminated_backends(target: ConnectTarget) -> None:
    db = await Database(target, PoolConfig(min_size=3, max_size=3, application_name="recovery-term")).open()
    admin = await connect(target)
    try:
        async with db.connection() as conn:
            assert await conn.fetchval("SELECT 1") == 1
        ended = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'recovery-term'"
        )
        assert ended == 3
        await asyncio.sleep(0.1)  # let the event loop read the servers' goodbye messages
        results = []
        for _ in range(6):
            async with db.connection() as conn:
                results.append(await conn.fetchval("SELECT 2"))
        assert results == [2] * 6
        await _until_healthy(db)
        # A backend killed in the middle of a query surfaces as an error for that query only.
        async with db.connection() as conn:
            pid = await conn.fetchval("SELECT pg_backend_pid()")
            killer = asyncio.create_task(
                admin.fetchval("SELECT pg_sleep(0.2), pg_terminate_backend($1)", pid)
            )
            with pytest.raises(
                (asyncpg.exceptions.AdminShutdownError, asyncpg.exceptions.ConnectionDoesNotExistError)
            ):
                await conn.execute("SELECT pg_sleep(5)")
            await killer
        async with db.connection() as conn:
            assert await conn.fetchval("SELECT 3") == 3
        assert (await db.health_check()).healthy
    finally:
        await admin.close()
        await db.close()


async def test_full_server_gives_pool_exhausted_not_a_hang(target: ConnectTarget) -> None:
    hogs: list[asyncpg.Connection] = []
    try:
        while True:
            try:
                hogs.append(await asyncpg.connect(**target.connect_kwargs(), timeout=5))
            except asyncpg.exceptions.TooManyConnectionsError:
                break
            assert len(hogs) <= MAX_CONNECTIONS
        started = time.monotonic()
        with pytest.raises(PoolExhaustedError) as opening:
            await Database(target, PoolConfig(min_size=1, max_size=2)).open()
        db = await Database(target, PoolConfig(min_size=0, max_size=2, acquire_timeout=3)).open()
        try:
            with pytest.raises(PoolExhaustedError) as acquiring:
                async with db.connection() as conn:
                    await conn.fetchval("SELECT 1")
            assert time.monotonic() - started < 20  # a clear error, long before any hang
            for err in (opening.value, acquiring.value):
                assert err.code == "pool_exhausted"
                assert "max_connections" in err.suggestion
                assert PASSWORD not in str(err.to_dict())
            # Slots come back, and so does the pool.
            await hogs.pop().close()
            async with db.connection() as conn:
                assert await conn.fetchval("SELECT 1") == 1
        finally:
            await db.close()
    finally:
        for hog in hogs:
            await hog.close()


async def test_busy_pool_gives_pool_exhausted_after_the_acquire_timeout(target: ConnectTarget) -> None:
    db = await Database(target, PoolConfig(min_size=1, max_size=2, acquire_timeout=0.5)).open()
    try:
        release = asyncio.Event()

        async def hold() -> None:
            async with db.connection():
                await release.wait()

        holders = [asyncio.create_task(hold()) for _ in range(2)]
        await asyncio.sleep(0.1)
        with pytest.raises(PoolExhaustedError, match="No database connection became free"):
            async with db.connection():
                pass
        release.set()
        await asyncio.gather(*holders)
        async with db.connection() as conn:
            assert await conn.fetchval("SELECT 1") == 1
        assert db.stats().failures == 1
    finally:
        await db.close()
