"""BM25 statistics (migration 0042): exact after every write, rolled back with their transaction, per repository."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import asyncpg
import pytest

from mahavishnu_assets.database.migrations import load_migrations, migrate_down, migrate_up
from mahavishnu_assets.database.pool import Database, connect
from mahavishnu_assets.database.target import ConnectTarget
from mahavishnu_assets.index.synthetic import add_chunks, content_hash
from mahavishnu_assets.ingest import store
from mahavishnu_assets.ingest.chunk import Chunk, chunk_hash
from mahavishnu_assets.ingest.pipeline import ingest_repository
from mahavishnu_assets.memory.snapshots import SnapshotManager
from mahavishnu_assets.settings import Settings
from mahavishnu_assets.testing.ollama_stub import OllamaStub
from tests import ingest_helpers
from tests.ingest_helpers import commit_all, ingest_settings, make_repo, python_module, write_files

stub = ingest_helpers.stub  # the fixture

STATS_VERSION = 42
NAMES_VERSION = 45

Stats = tuple[dict[int, tuple[int, int]], dict[tuple[int, str], int]]


async def stored_stats(conn: asyncpg.Connection) -> Stats:
    repos = {
        r["repo_id"]: (r["chunks"], r["lexemes"])
        for r in await conn.fetch("SELECT repo_id, chunks, lexemes FROM mahavishnu.lexical_repo_stats")
    }
    terms = {
        (r["repo_id"], r["lexeme"]): r["df"]
        for r in await conn.fetch("SELECT repo_id, lexeme, df FROM mahavishnu.lexical_terms")
    }
    return repos, terms


async def recounted(conn: asyncpg.Connection) -> Stats:
    """The statistics counted in Python from the chunks as they are: the oracle for the triggers."""
    rows = await conn.fetch(
        "SELECT repo_id, tsvector_to_array(search_terms) AS lexemes FROM mahavishnu.chunks"
    )
    chunks: Counter[int] = Counter()
    length: Counter[int] = Counter()
    df: Counter[tuple[int, str]] = Counter()
    for r in rows:
        chunks[r["repo_id"]] += 1
        length[r["repo_id"]] += len(r["lexemes"])
        df.update((r["repo_id"], lexeme) for lexeme in r["lexemes"])
    return {repo: (chunks[repo], length[repo]) for repo in chunks}, dict(df)


async def assert_exact(conn: asyncpg.Connection) -> Stats:
    stats = await stored_stats(conn)
    assert stats == await recounted(conn)
    return stats


async def repo_id(conn: asyncpg.Connection, name: str) -> int:
    return int(await conn.fetchval("SELECT id FROM mahavishnu.repositories WHERE name = $1", name))


def files() -> dict[str, str | bytes]:
    return {
        "src/alpha.py": python_module("alpha"),
        "src/beta.py": python_module("beta", 5),
        "src/zebra.py": "def stripes():\n    return 'quagga okapi'\n",
        "docs/guide.md": "# Guide\n\nThe okapi lives in the forest.\n",
    }


async def test_statistics_are_exact_after_ingest_edit_add_and_delete(
    db: Database, database: ConnectTarget, tmp_path: Path, stub: OllamaStub
) -> None:
    repo = make_repo(tmp_path / "repo", files())
    settings = ingest_settings(database, tmp_path / "home", stub.url)
    await ingest_repository(db, settings, repo, name="r")
    async with db.connection() as conn:
        rid = await repo_id(conn, "r")
        repos, terms = await assert_exact(conn)
        assert repos[rid][0] == await conn.fetchval("SELECT count(*) FROM mahavishnu.chunks")
        assert terms[(rid, "quagga")] == 1
        assert terms[(rid, "okapi")] == 2  # zebra.py and the guide

    # An edit that removes one word and adds another, a new file, a deleted file.
    write_files(
        repo,
        {
            "src/zebra.py": "def stripes():\n    return 'zorilla okapi'\n",
            "src/gamma.py": python_module("gamma", 4) + "\nZORILLA = 'zorilla'\n",
        },
    )
    (repo / "docs/guide.md").unlink()
    commit_all(repo, "edit")
    await ingest_repository(db, settings, repo, name="r")
    async with db.connection() as conn:
        repos, terms = await assert_exact(conn)
        assert (rid, "quagga") not in terms  # its last chunk went: the row goes, not a zero
        assert (rid, "forest") not in terms
        assert terms[(rid, "okapi")] == 1
        assert terms[(rid, "zorilla")] == 2
        assert min(terms.values()) >= 1

    # Everything deleted: nothing of the repository is left in the statistics.
    for path in list(files()) + ["src/gamma.py"]:
        (repo / path).unlink(missing_ok=True)
    write_files(repo, {"empty.txt": ""})
    commit_all(repo, "empty")
    await ingest_repository(db, settings, repo, name="r")
    async with db.connection() as conn:
        assert await assert_exact(conn) == ({}, {})


async def test_a_rolled_back_batch_leaves_the_statistics_as_they_were(
    db: Database, database: ConnectTarget, tmp_path: Path, stub: OllamaStub
) -> None:
    repo = make_repo(tmp_path / "repo", files())
    settings = ingest_settings(database, tmp_path / "home", stub.url)
    await ingest_repository(db, settings, repo, name="r")
    async with db.connection() as conn:
        rid = await repo_id(conn, "r")
        before = await assert_exact(conn)
        space_id = await conn.fetchval("SELECT space_id FROM mahavishnu.repositories WHERE id = $1", rid)
        dims = await conn.fetchval(
            "SELECT dimensions FROM mahavishnu.embedding_spaces WHERE id = $1", space_id
        )

        # Inside the transaction the statistics already follow its writes...
        class Abort(Exception):
            pass

        with pytest.raises(Abort):
            async with conn.transaction():
                await conn.execute("DELETE FROM mahavishnu.chunks WHERE path = 'src/zebra.py'")
                await add_chunks(conn, "r", "src/new.py", [("wildebeest herd", content_hash(1, b"t"))])
                _, terms = await assert_exact(conn)
                assert (rid, "quagga") not in terms and terms[(rid, "wildebeest")] == 1
                raise Abort
        # ...and roll back with it.
        assert await assert_exact(conn) == before

        # The ingest's own batch write failing after its chunks are loaded (here: the same skip verdict twice,
        # a primary key violation, as any failure before the commit): its statistics never show.
        text = "def hyena():\n    return 'aardwolf'\n"
        chunk = Chunk(0, 1, 2, text, chunk_hash(text))
        batch = store.BatchWrite(
            files=[
                store.NewFile(
                    "src/zebra.py", chunk_hash(text), "python", len(text), 2, None, None, None, [chunk]
                )
            ],
            skips=[store.NewSkip("bad.bin", "binary", 1, None, None, None)] * 2,
            remove=["docs/guide.md"],
            embeddings={chunk.content_hash: [0.5] * dims},
            needed={chunk.content_hash},
        )
        with pytest.raises(asyncpg.UniqueViolationError):
            await store.write_batch(
                conn, repo_id=rid, space_id=space_id, dimensions=dims, commit=None, config="c", batch=batch
            )
        assert await assert_exact(conn) == before


async def test_repositories_keep_their_own_rows_and_leave_none_behind(db: Database) -> None:
    async with db.connection() as conn:
        for name, words in (("one", "shared alpha"), ("two", "shared beta"), ("three", "shared gamma")):
            await add_chunks(
                conn, name, "a.py", [(f"{words} {i}", content_hash(i, name.encode())) for i in range(3)]
            )
        one, two = await repo_id(conn, "one"), await repo_id(conn, "two")
        repos, terms = await assert_exact(conn)
        assert repos[one] == repos[two] and terms[(one, "share")] == terms[(two, "share")] == 3
        # A repository deleted (chunks go by cascade from its row and its files' rows).
        await conn.execute("DELETE FROM mahavishnu.repositories WHERE name = 'one'")
        repos, terms = await assert_exact(conn)
        assert one not in repos and not [key for key in terms if key[0] == one]
        assert terms[(two, "share")] == 3
        # A chunk moved to another repository by an UPDATE.
        await conn.execute(
            """UPDATE mahavishnu.chunks SET repo_id = $1, content = 'delta'
               WHERE id = (SELECT min(id) FROM mahavishnu.chunks WHERE repo_id = $2)""",
            two,
            await repo_id(conn, "three"),
        )
        repos, terms = await assert_exact(conn)
        assert terms[(two, "delta")] == 1 and repos[two][0] == 4
        # TRUNCATE (here by cascade from the repositories) empties them.
        await conn.execute("TRUNCATE mahavishnu.repositories CASCADE")
        assert await assert_exact(conn) == ({}, {})


async def test_a_snapshot_restore_brings_the_statistics_back_with_the_chunks(db: Database) -> None:
    async with db.connection() as conn:
        await add_chunks(
            conn, "r", "a.py", [("okapi zebra", content_hash(1, b"r")), ("zebra", content_hash(2, b"r"))]
        )
        before = await assert_exact(conn)
    manager = SnapshotManager(db, Settings())
    snapshot = await manager.create("before")
    async with db.connection() as conn:
        await conn.execute("UPDATE mahavishnu.chunks SET content = 'quagga' WHERE content = 'zebra'")
        await conn.execute("DELETE FROM mahavishnu.chunks WHERE content = 'okapi zebra'")
        await add_chunks(conn, "other", "b.py", [("gnu", content_hash(3, b"o"))])
        assert (await assert_exact(conn)) != before
    await manager.restore(snapshot["id"], safety_snapshot=False)
    async with db.connection() as conn:
        assert await assert_exact(conn) == before


async def _insert_in_open_transaction(conn: asyncpg.Connection, name: str, words: str) -> asyncpg.Transaction:
    tx = conn.transaction()
    await tx.start()
    await add_chunks(conn, name, f"{name}.py", [(words, content_hash(len(words), name.encode()))])
    return tx


async def test_concurrent_writers_neither_wait_across_repositories_nor_deadlock_within_one(
    database: ConnectTarget,
) -> None:
    a, b = await connect(database), await connect(database)
    try:
        # The repositories exist before: rows of `repositories` are not what is tested here.
        for conn, name in ((a, "left"), (b, "right")):
            await add_chunks(conn, name, "seed.py", [("common words", content_hash(0, name.encode()))])
        # Different repositories: the second commits while the first still holds its rows (a wait would hit
        # the lock timeout and fail the test).
        tx = await _insert_in_open_transaction(a, "left", "common words again")
        await b.execute("SET lock_timeout = '5s'")
        await add_chunks(b, "right", "more.py", [("common words again", content_hash(9, b"right"))])
        await tx.commit()

        # One repository, the pattern of an ingest's two writers (delete old chunks, load new ones): the second
        # queues behind the first and both commit.
        await b.execute("RESET lock_timeout")
        first = a.transaction()
        await first.start()
        await a.execute(
            "DELETE FROM mahavishnu.chunks WHERE path = 'seed.py' AND repo_id = $1", await repo_id(a, "left")
        )

        async def second() -> None:
            async with b.transaction():
                await b.execute(
                    "DELETE FROM mahavishnu.chunks WHERE path = 'left.py' AND repo_id = $1",
                    await repo_id(b, "left"),
                )
                await add_chunks(b, "left", "words.py", [("words zebra", content_hash(5, b"left"))])

        waiting = asyncio.create_task(second())
        observer = await connect(database)
        try:
            while not await observer.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
            ):
                assert not waiting.done(), "the second writer should wait for the first"
                await asyncio.sleep(0.01)
        finally:
            await observer.close()
        await add_chunks(a, "left", "other.py", [("common zebra", content_hash(6, b"left"))])
        await first.commit()
        await waiting
        await assert_exact(a)
    finally:
        await a.close()
        await b.close()


async def test_names_given_to_stored_chunks_by_the_migration_are_those_ingest_gives(
    db: Database, database: ConnectTarget, tmp_path: Path, stub: OllamaStub
) -> None:
    """Migration 0045 fills `names` of chunks stored before it from the symbols table: the same names, terms
    and statistics as an ingest with the new code."""
    source = "class Console:\n" + "".join(
        f"    def method_{i}(self):\n        return {i}\n" for i in range(150)
    )
    repo = make_repo(tmp_path / "repo", {**files(), "src/console.py": source})
    await ingest_repository(db, ingest_settings(database, tmp_path / "home", stub.url), repo, name="r")
    query = "SELECT id, names, search_terms::text AS terms FROM mahavishnu.chunks ORDER BY id"
    async with db.connection() as conn:
        ingested = await conn.fetch(query)
        stats = await assert_exact(conn)
    assert sum(r["names"] is not None and "method_" in r["names"] for r in ingested) >= 2
    await db.close()
    await migrate_down(database, to=NAMES_VERSION - 1)
    await migrate_up(database, to=NAMES_VERSION)
    conn = await connect(database)
    try:
        assert await conn.fetch(query) == ingested
        assert await assert_exact(conn) == stats
    finally:
        await conn.close()


async def test_the_migration_counts_the_chunks_already_stored(empty_database: ConnectTarget) -> None:
    before = max(m.version for m in load_migrations() if m.version < STATS_VERSION)
    await migrate_up(empty_database, to=before)
    conn = await connect(empty_database)
    try:
        await add_chunks(
            conn,
            "old",
            "a.py",
            [("legacy words here", content_hash(1, b"o")), ("words", content_hash(2, b"o"))],
        )
        await migrate_up(empty_database, to=STATS_VERSION, conn=conn)
        repos, terms = await assert_exact(conn)
        rid = await repo_id(conn, "old")
        assert repos[rid][0] == 2 and terms[(rid, "word")] == 2 and terms[(rid, "legaci")] == 1
        # The repair function gives the same figures (and is what the migration ran).
        await conn.execute("SELECT mahavishnu.rebuild_lexical_stats()")
        assert await stored_stats(conn) == (repos, terms)
    finally:
        await conn.close()
