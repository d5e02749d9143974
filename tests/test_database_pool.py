"""The pool: vector codec, health, statistics, fail-fast when exhausted, clean close."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from mahavishnu_assets.database.pool import Database, PoolConfig
from mahavishnu_assets.database.target import ConnectTarget
from mahavishnu_assets.errors import DatabaseUnavailableError, PoolExhaustedError


async def test_vector_codec_round_trip(db: Database) -> None:
    async with db.connection() as conn:
        value = await conn.fetchval("SELECT '[1,2,3]'::vector")
        assert np.allclose(value.to_numpy(), [1, 2, 3])
        back = await conn.fetchval(
            "SELECT $1::vector <-> '[1,2,4]'::vector", np.array([1, 2, 3], dtype=np.float32)
        )
        assert back == pytest.approx(1.0)


async def test_codec_registered_after_migrations_create_the_type(empty_database: ConnectTarget) -> None:
    from mahavishnu_assets.database.migrations import migrate_up

    db = await Database(empty_database, PoolConfig(min_size=1, max_size=2)).open()
    try:
        await migrate_up(empty_database)
        await db.refresh_codecs()
        async with db.connection() as conn:
            value = await conn.fetchval("SELECT '[0.5,1]'::vector")
        assert np.allclose(value.to_numpy(), [0.5, 1])
    finally:
        await db.close()


async def test_codec_found_where_a_server_keeps_the_extension_in_another_schema(
    empty_database: ConnectTarget,
) -> None:
    """As hosted servers do (an `extensions` schema on the search path): the codec is looked up there."""
    from mahavishnu_assets.database.pool import connect

    conn = await connect(empty_database)
    try:
        assert await conn.fetchval("SELECT '[1]'::text") == "[1]"  # no vector type yet: no codec, no error
        await conn.execute("CREATE SCHEMA extensions; CREATE EXTENSION vector SCHEMA extensions")
        await conn.execute(f"ALTER DATABASE {empty_database.database} SET search_path = public, extensions")
    finally:
        await conn.close()
    conn = await connect(empty_database)
    try:
        value = await conn.fetchval("SELECT '[1,2,3]'::extensions.vector")
        assert not isinstance(value, str) and np.allclose(value.to_numpy(), [1, 2, 3])
        back = await conn.fetchval("SELECT $1::vector <-> '[1,2,4]'::vector", np.array([1, 2, 3]))
        assert back == pytest.approx(1.0)
    finally:
        await conn.close()


def test_percentiles_interpolate_between_samples() -> None:
    from mahavishnu_assets.database.pool import _percentiles

    assert _percentiles([], 50, 95) == [0.0, 0.0]
    assert _percentiles([7.0], 50, 95) == [7.0, 7.0]
    assert _percentiles([float(v) for v in range(101)], 50, 95, 99) == [50.0, 95.0, 99.0]
    assert _percentiles([1.0, 2.0], 50) == [1.5]
    assert _percentiles([4.0, 1.0, 3.0, 2.0], 95) == [pytest.approx(3.85)]


async def test_health_and_statistics(db: Database) -> None:
    report = await db.health_check()
    assert report.healthy and report.server_version and report.server_version.startswith("18")
    started = db.stats()

    async def hold(seconds: float) -> None:
        async with db.connection() as conn:
            await conn.execute("SELECT pg_sleep($1)", seconds)

    tasks = [asyncio.create_task(hold(0.3)) for _ in range(db.config.max_size + 2)]
    await asyncio.sleep(0.15)
    busy = db.stats()
    assert busy.in_use == db.config.max_size
    assert busy.waiting_now >= 2
    await asyncio.gather(*tasks)
    done = db.stats()
    assert done.in_use == 0
    assert done.acquires == started.acquires + db.config.max_size + 2
    assert done.waits >= 2
    assert done.peak_in_use == db.config.max_size
    assert done.size <= db.config.max_size
    assert done.acquire_p95_ms >= done.acquire_p50_ms >= 0
    assert set(done.to_dict()) >= {"size", "idle", "in_use", "waits", "healthy"}


async def test_exhausted_pool_fails_fast_with_a_clear_error(database: ConnectTarget) -> None:
    db = await Database(database, PoolConfig(min_size=1, max_size=1, acquire_timeout=0.3)).open()
    try:
        async with db.connection():
            with pytest.raises(PoolExhaustedError) as info:
                async with db.connection():
                    pass
        assert "pool max 1" in info.value.message
        assert db.stats().failures == 1
        # The pool is usable again once the holder lets go.
        async with db.connection() as conn:
            assert await conn.fetchval("SELECT 1") == 1
    finally:
        await db.close()


async def test_transaction_rolls_back_on_error(db: Database) -> None:
    with pytest.raises(RuntimeError):
        async with db.transaction() as conn:
            await conn.execute("INSERT INTO mahavishnu.repositories (name, root_path) VALUES ('r', '/x')")
            raise RuntimeError("boom")
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM mahavishnu.repositories") == 0


async def test_health_loop_runs_and_stops(db: Database) -> None:
    db.start_health_loop(interval=0.05)
    await asyncio.sleep(0.2)
    assert db.stats().last_health_check_age_seconds is not None
    assert db.stats().last_health_check_age_seconds < 0.2
    await db.stop_health_loop()


async def test_closed_pool_refuses_use(database: ConnectTarget) -> None:
    db = await Database(database).open()
    await db.close()
    with pytest.raises(DatabaseUnavailableError):
        async with db.connection():
            pass


@pytest.mark.parametrize("min_size", [1, 0])
async def test_missing_database_is_named_and_only_the_embedded_one_is_created(
    server_target: ConnectTarget, min_size: int
) -> None:
    import uuid
    from dataclasses import replace

    from mahavishnu_assets.database.pool import connect
    from mahavishnu_assets.database.server import _open_creating
    from mahavishnu_assets.errors import DatabaseMissingError

    from .conftest import drop_database

    name = f"t_{uuid.uuid4().hex[:16]}"
    external = replace(server_target.with_database(name), kind="external")
    config = PoolConfig(min_size=min_size, max_size=2)
    with pytest.raises(DatabaseMissingError) as info:
        await connect(external)
    assert info.value.to_dict()["error"] == "database_missing"
    if min_size:  # an empty pool would meet the missing database only at its first acquire
        with pytest.raises(DatabaseMissingError):
            await _open_creating(external, config)
    try:
        db = await _open_creating(replace(external, kind="embedded"), config)
        try:
            async with db.connection() as conn:
                assert await conn.fetchval("SELECT current_database()") == name
        finally:
            await db.close()
    finally:
        await drop_database(server_target, name)


async def test_a_new_database_is_migrated_and_its_pool_then_speaks_vector(
    empty_database: ConnectTarget, tmp_path: Path
) -> None:
    from mahavishnu_assets.database.migrations import schema_version
    from mahavishnu_assets.database.server import open_database
    from mahavishnu_assets.settings import Settings

    settings = Settings(home=tmp_path, database_url=empty_database.libpq_url())
    db = await open_database(settings, min_size=1, max_size=2)
    try:
        async with db.connection() as conn:
            assert await schema_version(conn) > 0
            # The pool connected before the vector type existed; its connections were renewed with the codec.
            vector = await conn.fetchval("SELECT '[1,2,3]'::vector")
        assert not isinstance(vector, str) and vector.to_list() == [1.0, 2.0, 3.0]
    finally:
        await db.close()
