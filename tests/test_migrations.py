"""Migrations: order, idempotence, checksum refusal, full reversal against the catalog."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mahavishnu_assets.database.migrations import (
    BOOKKEEPING,
    load_migrations,
    migrate_down,
    migrate_up,
    migrations_dir,
    schema_version,
    verify_schema,
)
from mahavishnu_assets.database.pool import connect
from mahavishnu_assets.database.target import ConnectTarget
from mahavishnu_assets.errors import MigrationChecksumError, SchemaError

CATALOG_SNAPSHOT = """
SELECT 'rel:' || n.nspname || '.' || c.relname AS obj FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
UNION ALL SELECT 'ns:' || nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'
UNION ALL SELECT 'ext:' || extname FROM pg_extension
UNION ALL SELECT 'type:' || t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
UNION ALL SELECT 'proc:' || p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
ORDER BY 1
"""


async def catalog(target: ConnectTarget) -> list[str]:
    conn = await connect(target)
    try:
        return [r["obj"] for r in await conn.fetch(CATALOG_SNAPSHOT)]
    finally:
        await conn.close()


def test_every_migration_has_a_reverse_and_versions_increase() -> None:
    migrations = load_migrations()
    versions = [m.version for m in migrations]
    assert versions == sorted(set(versions))
    assert versions[0] == 1
    assert all(m.down_sql.strip() for m in migrations)


async def test_up_twice_is_a_noop_and_down_leaves_nothing(empty_database: ConnectTarget) -> None:
    before = await catalog(empty_database)
    first = await migrate_up(empty_database)
    assert first.applied == [m.version for m in load_migrations()]
    second = await migrate_up(empty_database)
    assert second.applied == []
    assert second.version == first.version

    conn = await connect(empty_database)
    try:
        assert await verify_schema(conn) == []
        assert await schema_version(conn) == first.version
        assert await conn.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'vector'") is not None
    finally:
        await conn.close()

    down = await migrate_down(empty_database)
    assert down.reverted == sorted(first.applied, reverse=True)
    assert await catalog(empty_database) == before

    # And the way back up works from nothing again.
    again = await migrate_up(empty_database)
    assert again.applied == first.applied


async def test_partial_up_and_down(empty_database: ConnectTarget) -> None:
    report = await migrate_up(empty_database, to=1)
    assert report.applied == [1]
    assert report.pending and report.pending[0] == 2
    report = await migrate_up(empty_database)
    assert 1 not in report.applied
    down = await migrate_down(empty_database, to=1)
    assert 1 not in down.reverted
    conn = await connect(empty_database)
    try:
        assert await schema_version(conn) == 1
    finally:
        await conn.close()


async def test_edited_applied_migration_is_refused(empty_database: ConnectTarget, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    shutil.copytree(migrations_dir(), folder)
    await migrate_up(empty_database, folder=folder)
    edited = next(folder.glob("0002_*.up.sql"))
    edited.write_text(edited.read_text() + "\n-- a harmless-looking edit\n")
    with pytest.raises(MigrationChecksumError) as info:
        await migrate_up(empty_database, folder=folder)
    assert "0002" in info.value.message
    assert "new numbered migration" in info.value.to_dict()["suggestion"]
    conn = await connect(empty_database)
    try:
        problems = await verify_schema(conn, folder=folder)
    finally:
        await conn.close()
    assert any("edited" in p for p in problems)


async def test_failed_migration_applies_nothing(empty_database: ConnectTarget, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    shutil.copytree(migrations_dir(), folder)
    (folder / "9999_broken.up.sql").write_text(
        "CREATE TABLE mahavishnu.half_done (id int);\nSELECT * FROM no_such_table;"
    )
    (folder / "9999_broken.down.sql").write_text("DROP TABLE mahavishnu.half_done;")
    with pytest.raises(SchemaError) as info:
        await migrate_up(empty_database, folder=folder)
    assert "9999_broken" in info.value.message
    conn = await connect(empty_database)
    try:
        assert await conn.fetchval("SELECT to_regclass('mahavishnu.half_done')") is None
        assert await conn.fetchval(f"SELECT max(version) FROM {BOOKKEEPING}") < 9999  # noqa: S608
    finally:
        await conn.close()


async def test_hand_made_change_is_detected(database: ConnectTarget) -> None:
    conn = await connect(database)
    try:
        assert await verify_schema(conn) == []
        await conn.execute("ALTER TABLE mahavishnu.chunks ADD COLUMN sneaky text")
        problems = await verify_schema(conn)
    finally:
        await conn.close()
    assert problems and "differs" in problems[0]


async def test_concurrent_migrators_apply_once(empty_database: ConnectTarget) -> None:
    import asyncio

    reports = await asyncio.gather(*(migrate_up(empty_database) for _ in range(4)))
    applied = sorted(v for r in reports for v in r.applied)
    assert applied == [m.version for m in load_migrations()]


async def test_nothing_pending_waits_for_no_lock(database: ConnectTarget, tmp_path: Path) -> None:
    """Every command checks migrations: with nothing pending it reads, and never queues behind a migrator."""
    import asyncio

    from mahavishnu_assets.database.migrations import LOCK_KEY

    holder = await connect(database)
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
        report = await asyncio.wait_for(migrate_up(database), timeout=30)
        assert (report.applied, report.pending) == ([], [])
        assert report.version == load_migrations()[-1].version

        # A pending migration still waits for the lock holder.
        folder = tmp_path / "migrations"
        shutil.copytree(migrations_dir(), folder)
        (folder / "9999_extra.up.sql").write_text("CREATE TABLE mahavishnu.extra (id int);")
        (folder / "9999_extra.down.sql").write_text("DROP TABLE mahavishnu.extra;")
        waiting = asyncio.ensure_future(migrate_up(database, folder=folder))
        await asyncio.sleep(1.0)
        assert not waiting.done()
        await holder.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
        assert (await asyncio.wait_for(waiting, timeout=30)).applied == [9999]
    finally:
        await holder.close()


async def test_edited_migration_is_refused_with_nothing_pending(
    database: ConnectTarget, tmp_path: Path
) -> None:
    folder = tmp_path / "migrations"
    shutil.copytree(migrations_dir(), folder)
    edited = next(folder.glob("0003_*.up.sql"))
    edited.write_text(edited.read_text() + "\n-- edited\n")
    with pytest.raises(MigrationChecksumError):
        await migrate_up(database, folder=folder)
