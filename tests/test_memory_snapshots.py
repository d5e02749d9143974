"""Memory snapshots on real PostgreSQL: sharing, exact restore, copy-on-write races, retention, search."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import asyncpg
import pytest

from mahavishnu_assets.database.pool import Database, connect
from mahavishnu_assets.database.target import ConnectTarget
from mahavishnu_assets.errors import NotFoundError, SnapshotError
from mahavishnu_assets.memory.snapshots import TABLES, SnapshotManager
from mahavishnu_assets.settings import Settings

KEYS = {t.name: ", ".join(t.key) for t in TABLES}


async def seed(
    conn: asyncpg.Connection, *, files: int = 3, chunks_per_file: int = 4, memories: int = 3
) -> None:
    """A small corpus and memory: two repositories, files, chunks with embeddings, memories."""
    await conn.execute(
        "INSERT INTO mahavishnu.repositories (name, root_path, head_commit) VALUES ('alpha', '/a', 'c1'), "
        "('beta', '/b', 'c2')"
    )
    space = await conn.fetchval(
        "INSERT INTO mahavishnu.embedding_spaces (provider, model, dimensions) VALUES ('t', 'm', 3) RETURNING id"
    )
    for f in range(files):
        repo = await conn.fetchval(
            "SELECT id FROM mahavishnu.repositories ORDER BY id OFFSET $1 LIMIT 1", f % 2
        )
        file_id = await conn.fetchval(
            "INSERT INTO mahavishnu.source_files (repo_id, path, content_hash, language, size_bytes, line_count) "
            "VALUES ($1, $2, $3, 'python', 100, 40) RETURNING id",
            repo,
            f"src/file_{f}.py",
            f"file-{f}".encode(),
        )
        for c in range(chunks_per_file):
            text = f"def function_{f}_{c}(): return 'chunk {f} {c} ünï quote''s'"
            digest = f"chunk-{f}-{c}".encode()
            await conn.execute(
                "INSERT INTO mahavishnu.chunks (file_id, repo_id, chunk_index, path, language, start_line, "
                "end_line, content, content_hash) VALUES ($1, $2, $3, $4, 'python', $5, $6, $7, $8)",
                file_id,
                repo,
                c,
                f"src/file_{f}.py",
                c * 10 + 1,
                c * 10 + 10,
                text,
                digest,
            )
            await conn.execute(
                "INSERT INTO mahavishnu.embeddings (space_id, content_hash, dimensions, embedding) "
                "VALUES ($1, $2, 3, $3)",
                space,
                digest,
                [float(f + 1), float(c + 1), 0.5],
            )
    for m in range(memories):
        await conn.execute(
            "INSERT INTO mahavishnu.memories (memory_type, content, metadata, space_id, dimensions, embedding) "
            "VALUES ('agent', $1, $2, $3, 3, $4)",
            f"memory number {m} about pools",
            {"m": m},
            space,
            [1.0, float(m), 2.0],
        )


async def digest(conn: asyncpg.Connection) -> dict[str, str | None]:
    """Every snapshotted table's full contents, hashed in key order."""
    out = {}
    for table in TABLES:
        out[table.name] = await conn.fetchval(
            f"SELECT md5(string_agg(t::text, '|' ORDER BY {KEYS[table.name]})) FROM mahavishnu.{table.name} t"  # noqa: S608
        )
    return out


async def churn(conn: asyncpg.Connection) -> None:
    """Updates, deletes and inserts in every table, including a parent updated while its children stay."""
    await conn.execute("UPDATE mahavishnu.repositories SET head_commit = 'c9' WHERE name = 'alpha'")
    await conn.execute("UPDATE mahavishnu.source_files SET size_bytes = 999 WHERE path = 'src/file_0.py'")
    await conn.execute("UPDATE mahavishnu.chunks SET content = 'rewritten' WHERE chunk_index = 0")
    await conn.execute("DELETE FROM mahavishnu.chunks WHERE chunk_index = 3")
    await conn.execute("DELETE FROM mahavishnu.source_files WHERE path = 'src/file_2.py'")
    await conn.execute("DELETE FROM mahavishnu.embeddings WHERE content_hash = 'chunk-1-1'::bytea")
    await conn.execute("UPDATE mahavishnu.memories SET content = 'changed memory', metadata = '{\"x\": 1}'")
    await conn.execute(
        "DELETE FROM mahavishnu.memories WHERE metadata->>'m' = '2' OR content = 'changed memory' "
        "AND id = (SELECT max(id) FROM mahavishnu.memories)"
    )
    await conn.execute("INSERT INTO mahavishnu.repositories (name, root_path) VALUES ('gamma', '/g')")
    await conn.execute(
        "INSERT INTO mahavishnu.memories (memory_type, content) VALUES ('insight', 'a brand new insight')"
    )
    space = await conn.fetchval(
        "INSERT INTO mahavishnu.embedding_spaces (provider, model, dimensions) VALUES ('t', 'other', 2) "
        "RETURNING id"
    )
    await conn.execute(
        "INSERT INTO mahavishnu.embeddings (space_id, content_hash, dimensions, embedding) "
        "VALUES ($1, 'x'::bytea, 2, '[1,2]')",
        space,
    )


def manager(db: Database, **memory: object) -> SnapshotManager:
    settings = Settings()
    for key, value in memory.items():
        setattr(settings.memory, key, value)
    return SnapshotManager(db, settings)


async def test_create_get_list_delete(db: Database) -> None:
    sm = manager(db)
    async with db.connection() as conn:
        await seed(conn)
    first = await sm.create("first")
    assert first["name"] == "first"
    assert first["stats"]["rows"] == {
        "repositories": 2,
        "embedding_spaces": 1,
        "source_files": 3,
        "chunks": 12,
        "symbols": 0,
        "embeddings": 12,
        "memories": 3,
    }
    unnamed = await sm.create()
    assert unnamed["name"].startswith("snapshot-")
    async with db.connection() as conn:
        # The first snapshot rebuilds the version tables' keys; the schema still matches the migrations.
        from mahavishnu_assets.database.migrations import verify_schema

        assert await verify_schema(conn) == []
    assert (await sm.get(first["id"]))["stats"] == first["stats"]
    assert [s["id"] for s in await sm.list_all()] == [unnamed["id"], first["id"]]
    assert [s["id"] for s in await sm.list_all(name="first")] == [first["id"]]
    deleted = await sm.delete(first["id"])
    assert deleted["id"] == first["id"]
    with pytest.raises(NotFoundError):
        await sm.get(first["id"])
    with pytest.raises(NotFoundError):
        await sm.delete(first["id"])
    with pytest.raises(NotFoundError):
        await sm.restore(first["id"])


async def test_unchanged_rows_are_shared_not_copied(db: Database) -> None:
    sm = manager(db)
    async with db.connection() as conn:
        await seed(conn)
    one = await sm.create("one")
    assert sum(one["stats"]["new_versions"].values()) == 33
    two = await sm.create("two")
    assert sum(two["stats"]["new_versions"].values()) == 0
    assert two["stats"]["shared_rows"] == two["stats"]["total_rows"] == 33
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE mahavishnu.chunks SET content = 'edited' WHERE id = (SELECT min(id) FROM mahavishnu.chunks)"
        )
        versions = await conn.fetchval("SELECT count(*) FROM mahavishnu.snap_chunks")
        copied = await conn.fetchval("SELECT count(*) FROM mahavishnu.snap_chunks WHERE data IS NOT NULL")
    # Snapshots point at live rows; only the edited row's old values were copied, by the trigger.
    assert (versions, copied) == (12, 1)
    three = await sm.create("three")
    assert three["stats"]["new_versions"]["chunks"] == 1
    assert three["stats"]["closed_versions"]["chunks"] == 1
    stats = await sm.stats()
    assert stats["snapshots"] == 3
    assert stats["stored_versions"] == 34 and stats["logical_rows"] == 99
    assert stats["copied_rows"] == 1 and stats["sharing_ratio"] > 2.9


async def test_restore_gives_exactly_the_snapshot(db: Database) -> None:
    sm = manager(db, restore_safety_snapshot=True)
    async with db.connection() as conn:
        await seed(conn)
        at_one = await digest(conn)
    one = await sm.create("one")
    async with db.connection() as conn:
        await churn(conn)
        at_two = await digest(conn)
    two = await sm.create("two")
    async with db.connection() as conn:
        # More change after the second snapshot, never snapshotted.
        await conn.execute("DELETE FROM mahavishnu.repositories WHERE name = 'beta'")
        await conn.execute("UPDATE mahavishnu.chunks SET content = 'third state'")
    result = await sm.restore(one["id"])
    assert result["safety_snapshot"]["name"] == f"before-restore-of-{one['id']}"
    assert result["snapshot"]["restored_at"] is not None
    async with db.connection() as conn:
        assert await digest(conn) == at_one
    await sm.restore(two["id"], safety_snapshot=False)
    async with db.connection() as conn:
        assert await digest(conn) == at_two
    # The safety snapshot undoes the first restore: the never-snapshotted third state comes back.
    await sm.restore(result["safety_snapshot"]["id"], safety_snapshot=False)
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM mahavishnu.repositories WHERE name = 'beta'") == 0
        assert await conn.fetchval("SELECT count(DISTINCT content) FROM mahavishnu.chunks") == 1
    await sm.restore(one["id"], safety_snapshot=False)
    async with db.connection() as conn:
        assert await digest(conn) == at_one
        # Identity sequences never move back: new rows get fresh ids.
        new_id = await conn.fetchval(
            "INSERT INTO mahavishnu.memories (memory_type, content) VALUES ('agent', 'after') RETURNING id"
        )
        assert new_id > await conn.fetchval(
            "SELECT max(id) FROM mahavishnu.memories WHERE content <> 'after'"
        )


async def test_restore_keeps_children_of_updated_parents(db: Database) -> None:
    """A parent changed after the snapshot is updated in place, so ON DELETE CASCADE never hits kept children."""
    sm = manager(db, restore_safety_snapshot=False)
    async with db.connection() as conn:
        await seed(conn)
        before = await digest(conn)
    snap = await sm.create()
    async with db.connection() as conn:
        await conn.execute("UPDATE mahavishnu.repositories SET root_path = '/moved'")
        await conn.execute("UPDATE mahavishnu.source_files SET commit = 'new'")
        await conn.execute("UPDATE mahavishnu.embedding_spaces SET model = 'renamed'")
    result = await sm.restore(snap["id"])
    assert result["restored"]["chunks"] == {"deleted": 0, "updated": 0, "inserted": 0}
    assert result["restored"]["repositories"]["updated"] == 2
    async with db.connection() as conn:
        assert await digest(conn) == before


async def test_columns_added_later_are_carried(db: Database) -> None:
    """Other migrations add columns (plain, defaulted, generated): snapshots follow the catalog."""
    sm = manager(db, restore_safety_snapshot=False)
    async with db.connection() as conn:
        await conn.execute("ALTER TABLE mahavishnu.chunks ADD COLUMN note text")
        await conn.execute(
            "ALTER TABLE mahavishnu.chunks ADD COLUMN shout text GENERATED ALWAYS AS (upper(path)) STORED"
        )
        await seed(conn)
        await conn.execute("UPDATE mahavishnu.chunks SET note = 'kept ' || id")
        before = await digest(conn)
    snap = await sm.create()
    async with db.connection() as conn:
        await conn.execute("DELETE FROM mahavishnu.chunks")
        await conn.execute("ALTER TABLE mahavishnu.chunks ADD COLUMN later integer NOT NULL DEFAULT 7")
    await sm.restore(snap["id"])
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM mahavishnu.chunks WHERE later = 7") == 12
        await conn.execute("ALTER TABLE mahavishnu.chunks DROP COLUMN later")
        assert await digest(conn) == before


async def test_truncate_preserves_snapshotted_rows(db: Database) -> None:
    sm = manager(db, restore_safety_snapshot=False)
    async with db.connection() as conn:
        await seed(conn)
        before = await digest(conn)
    snap = await sm.create()
    async with db.connection() as conn:
        await conn.execute("TRUNCATE mahavishnu.memories")
        await conn.execute("TRUNCATE mahavishnu.repositories, mahavishnu.embedding_spaces CASCADE")
        assert await conn.fetchval("SELECT count(*) FROM mahavishnu.chunks") == 0
    await sm.restore(snap["id"])
    async with db.connection() as conn:
        assert await digest(conn) == before


async def test_snapshot_is_consistent_under_concurrent_writes(db: Database) -> None:
    """Each writer transaction adds a repository and a memory together: a snapshot has both or neither."""
    sm = manager(db)
    stop = asyncio.Event()

    async def writer() -> int:
        n = 0
        while not stop.is_set():
            async with db.transaction() as conn:
                await conn.execute(
                    "INSERT INTO mahavishnu.repositories (name, root_path) VALUES ($1, '/w')", f"w{n}"
                )
                await conn.execute(
                    "INSERT INTO mahavishnu.memories (memory_type, content) VALUES ('workflow', $1)", f"w{n}"
                )
                # And a delete, so copy-on-write races the snapshot too.
                await conn.execute("DELETE FROM mahavishnu.memories WHERE content = $1", f"w{n - 5}")
                await conn.execute("DELETE FROM mahavishnu.repositories WHERE name = $1", f"w{n - 5}")
            n += 1
        return n

    task = asyncio.create_task(writer())
    snaps = []
    for i in range(4):
        await asyncio.sleep(0.05)
        snaps.append(await sm.create(f"during-{i}"))
    stop.set()
    writes = await task
    assert writes > 5
    for snap in snaps:
        rows = snap["stats"]["rows"]
        assert rows["repositories"] == rows["memories"]
    # And restoring one gives pairs that match name for name.
    await sm.restore(snaps[1]["id"], safety_snapshot=False)
    async with db.connection() as conn:
        repos = {r["name"] for r in await conn.fetch("SELECT name FROM mahavishnu.repositories")}
        mems = {r["content"] for r in await conn.fetch("SELECT content FROM mahavishnu.memories")}
    assert repos == mems and len(repos) == snaps[1]["stats"]["rows"]["repositories"]


async def _wait_for(conn: asyncpg.Connection, sql: str, *args: object, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await conn.fetchval(sql, *args):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition never became true: {sql}")
        await asyncio.sleep(0.02)


async def test_delete_racing_a_snapshot_is_preserved(db: Database, database: ConnectTarget) -> None:
    """A row deleted after the snapshot's transaction began but before it committed still gets copied."""
    sm = manager(db, restore_safety_snapshot=False)
    async with db.connection() as conn:
        await seed(conn)
        victim = await conn.fetchrow("SELECT id, content FROM mahavishnu.chunks ORDER BY id LIMIT 1")
    locker = await connect(database)
    writer = await connect(database)
    watcher = await connect(database)
    try:
        # Hold the last table the snapshot reads, so it stops half way with its transaction snapshot taken.
        await locker.execute("BEGIN")
        await locker.execute("LOCK TABLE mahavishnu.memories IN ACCESS EXCLUSIVE MODE")
        snapping = asyncio.create_task(sm.create("racing"))
        await _wait_for(
            watcher,
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND wait_event = 'relation'"
            " AND query LIKE '%mahavishnu.\"memories\"%')",
        )
        deleting = asyncio.create_task(
            writer.execute("DELETE FROM mahavishnu.chunks WHERE id = $1", victim["id"])
        )
        await _wait_for(
            watcher,
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE wait_event = 'advisory' AND query LIKE 'DELETE%')",
        )
        await locker.execute("ROLLBACK")
        snap = await snapping
        await deleting
    finally:
        for c in (locker, writer, watcher):
            await c.close()
    assert snap["stats"]["rows"]["chunks"] == 12
    async with db.connection() as conn:
        copied = await conn.fetchval(
            "SELECT data->>'content' FROM mahavishnu.snap_chunks WHERE id = $1", victim["id"]
        )
        assert copied == victim["content"]
    await sm.restore(snap["id"])
    async with db.connection() as conn:
        assert (
            await conn.fetchval("SELECT content FROM mahavishnu.chunks WHERE id = $1", victim["id"])
            == victim["content"]
        )


async def test_repeatable_read_writer_older_than_a_snapshot_must_retry(
    db: Database, database: ConnectTarget
) -> None:
    sm = manager(db, restore_safety_snapshot=False)
    async with db.connection() as conn:
        await seed(conn)
        victim = await conn.fetchval("SELECT min(id) FROM mahavishnu.chunks")
    old = await connect(database)
    try:
        await old.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        await old.fetchval("SELECT count(*) FROM mahavishnu.chunks")
        snap = await sm.create()
        with pytest.raises(asyncpg.exceptions.SerializationError):
            await old.execute("DELETE FROM mahavishnu.chunks WHERE id = $1", victim)
        await old.execute("ROLLBACK")
        # A repeatable read writer that starts after the snapshot proceeds and preserves the row.
        await old.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        await old.execute("DELETE FROM mahavishnu.chunks WHERE id = $1", victim)
        await old.execute("COMMIT")
    finally:
        await old.close()
    await sm.restore(snap["id"])
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM mahavishnu.chunks WHERE id = $1", victim) == 1


async def test_bypassed_triggers_are_detected_not_restored(db: Database) -> None:
    sm = manager(db, restore_safety_snapshot=False)
    async with db.connection() as conn:
        await seed(conn)
    snap = await sm.create()
    async with db.connection() as conn:
        await conn.execute("ALTER TABLE mahavishnu.chunks DISABLE TRIGGER snapshot_preserve_delete")
        await conn.execute("DELETE FROM mahavishnu.chunks WHERE chunk_index = 1")
        await conn.execute("ALTER TABLE mahavishnu.chunks ENABLE TRIGGER snapshot_preserve_delete")
        before = await digest(conn)
    with pytest.raises(SnapshotError, match="damaged"):
        await sm.restore(snap["id"])
    async with db.connection() as conn:
        assert await digest(conn) == before


async def test_restore_blocked_by_an_outside_reference_changes_nothing(db: Database) -> None:
    sm = manager(db, restore_safety_snapshot=False)
    snap = await sm.create("empty")
    async with db.connection() as conn:
        await seed(conn)
        await conn.execute(
            "CREATE TABLE mahavishnu.t_outside (repo_id bigint REFERENCES mahavishnu.repositories (id))"
        )
        await conn.execute("INSERT INTO mahavishnu.t_outside SELECT min(id) FROM mahavishnu.repositories")
        before = await digest(conn)
    with pytest.raises(SnapshotError, match="cannot be restored"):
        await sm.restore(snap["id"])
    async with db.connection() as conn:
        assert await digest(conn) == before
        await conn.execute("DROP TABLE mahavishnu.t_outside")


async def test_retention_keeps_the_newest(db: Database) -> None:
    sm = manager(db)
    ids = [(await sm.create(f"s{i}"))["id"] for i in range(5)]
    async with db.connection() as conn:
        # Age the two oldest beyond the retention window.
        await conn.execute(
            "UPDATE mahavishnu.memory_snapshots SET created_at = created_at - interval '40 days' WHERE id = ANY($1)",
            ids[:2],
        )
    removed = await sm.cleanup(keep=4, max_age_days=30)
    assert sorted(s["id"] for s in removed) == ids[:2]
    removed = await sm.cleanup(keep=2, max_age_days=30)
    assert sorted(s["id"] for s in removed) == [ids[2]]
    async with db.connection() as conn:
        now = await conn.fetchval("SELECT now()")
    # Everything is "too old" a year from now, but the newest snapshot always stays.
    removed = await sm.cleanup(keep=5, max_age_days=1, now=now + timedelta(days=365))
    assert [s["id"] for s in removed] == [ids[3]]
    assert [s["id"] for s in await sm.list_all()] == [ids[4]]
    with pytest.raises(SnapshotError):
        await sm.cleanup(keep=0)


async def test_deleting_snapshots_releases_only_unshared_versions(db: Database) -> None:
    sm = manager(db)
    async with db.connection() as conn:
        await seed(conn, files=1, chunks_per_file=3, memories=0)
    one = await sm.create("one")
    async with db.connection() as conn:
        await conn.execute("DELETE FROM mahavishnu.chunks WHERE chunk_index = 0")
    two = await sm.create("two")
    await sm.delete(two["id"])
    async with db.connection() as conn:
        # All versions are still needed by snapshot one, including the copied deleted row.
        assert await conn.fetchval("SELECT count(*) FROM mahavishnu.snap_chunks") == 3
    await sm.delete(one["id"])
    async with db.connection() as conn:
        for table in TABLES:
            assert await conn.fetchval(f"SELECT count(*) FROM mahavishnu.{table.store}") == 0  # noqa: S608


async def test_search_inside_snapshots(db: Database) -> None:
    sm = manager(db)
    async with db.connection() as conn:
        await seed(conn)
        await conn.execute(
            "INSERT INTO mahavishnu.memories (memory_type, content) VALUES ('insight', 'the walrus remembers')"
        )
    old = await sm.create("old")
    async with db.connection() as conn:
        await conn.execute("DELETE FROM mahavishnu.memories WHERE content LIKE '%walrus%'")
        await conn.execute("UPDATE mahavishnu.chunks SET content = 'zebra crossing' WHERE chunk_index = 2")
    new = await sm.create("new")
    hits = await sm.search("walrus", snapshot_id=old["id"])
    assert [(h["table"], h["content"]) for h in hits] == [("memories", "the walrus remembers")]
    assert "<b>walrus</b>" in hits[0]["headline"]
    assert await sm.search("walrus", snapshot_id=new["id"]) == []
    assert await sm.search("zebra", snapshot_id=old["id"]) == []
    zebras = await sm.search("zebra")  # newest by default
    assert len(zebras) == 3 and {h["path"] for h in zebras} == {f"src/file_{f}.py" for f in range(3)}
    old_chunks = await sm.search("function_1_2", snapshot_id=old["id"], tables=["chunks"])
    assert old_chunks and all(h["table"] == "chunks" for h in old_chunks)
    assert old_chunks[0]["start_line"] == 21
    with pytest.raises(SnapshotError):
        await sm.search("   ")
    with pytest.raises(NotFoundError):
        await sm.search("x", snapshot_id=10_000)


async def test_search_without_a_stored_text_column(db: Database) -> None:
    """Without the index domain's generated tsvector column, terms are computed on the fly."""
    sm = manager(db, snapshot_search_config="simple")
    async with db.connection() as conn:
        # The text ranking's statistics triggers read that column: they go with it.
        for event in ("insert", "update", "delete"):
            await conn.execute(f"DROP TRIGGER chunks_lexical_stats_{event} ON mahavishnu.chunks")
        for col in await conn.fetch(
            "SELECT attname FROM pg_attribute WHERE attrelid = 'mahavishnu.chunks'::regclass AND attgenerated = 's'"
        ):
            await conn.execute(f'ALTER TABLE mahavishnu.chunks DROP COLUMN "{col["attname"]}"')
        await seed(conn, files=1, chunks_per_file=2, memories=0)
    snap = await sm.create()
    async with db.connection() as conn:
        await conn.execute("DELETE FROM mahavishnu.chunks WHERE chunk_index = 0")
    hits = await sm.search("chunk", snapshot_id=snap["id"])
    assert len(hits) == 2


async def test_only_changed_tables_are_compared(db: Database) -> None:
    sm = manager(db, restore_safety_snapshot=False)
    async with db.connection() as conn:
        await seed(conn)
    one = await sm.create("one")
    assert one["stats"]["compared_tables"] == sorted(KEYS)
    two = await sm.create("two")
    assert two["stats"]["compared_tables"] == []
    async with db.connection() as conn:
        await conn.execute(
            "INSERT INTO mahavishnu.memories (memory_type, content) VALUES ('rag', 'late memory')"
        )
        # A rolled-back change touches nothing.
        tx = conn.transaction()
        await tx.start()
        await conn.execute("DELETE FROM mahavishnu.chunks")
        await tx.rollback()
        at_three = await digest(conn)
    three = await sm.create("three")
    assert three["stats"]["compared_tables"] == ["memories"]
    assert three["stats"]["rows"]["memories"] == 4 and three["stats"]["rows"]["chunks"] == 12
    # Deleting the newest snapshot drops its open versions: the next one compares everything again and
    # still holds the memory added before it.
    await sm.delete(three["id"])
    four = await sm.create("four")
    assert four["stats"]["compared_tables"] == sorted(KEYS)
    assert four["stats"]["rows"]["memories"] == 4
    async with db.connection() as conn:
        await conn.execute("DELETE FROM mahavishnu.memories")
    await sm.restore(four["id"])
    async with db.connection() as conn:
        assert await digest(conn) == at_three


async def test_search_with_an_unknown_configuration_is_a_clear_error(db: Database) -> None:
    await manager(db).create()
    with pytest.raises(SnapshotError, match="no_such_config"):
        await manager(db, snapshot_search_config="no_such_config").search("anything")
