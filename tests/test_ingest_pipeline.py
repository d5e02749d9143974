"""The ingest pipeline on real PostgreSQL with a real HTTP embedding server: incremental behaviour."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from mahavishnu_assets.database.pool import Database, PoolConfig, connect
from mahavishnu_assets.database.target import ConnectTarget
from mahavishnu_assets.ingest.chunk import split_lines
from mahavishnu_assets.ingest.pipeline import ingest_repository
from mahavishnu_assets.ingest.reader import read_slice as _real_read_slice
from mahavishnu_assets.testing.ollama_stub import OllamaStub
from tests import ingest_helpers
from tests.ingest_helpers import (
    DIMENSIONS,
    commit_all,
    fingerprint,
    git,
    ingest_settings,
    make_repo,
    python_module,
    write_files,
)

stub = ingest_helpers.stub  # the fixture


def base_files() -> dict[str, str | bytes]:
    return {
        "src/alpha.py": python_module("alpha"),
        "src/beta.py": python_module("beta"),
        "src/gamma.py": python_module("gamma", 6),
        "web/app.ts": "export function greet(name: string): string {\n  return `hi ${name}`;\n}\n",
        "README.md": "# Title\n\nSome words about the project.\n\n## Usage\n\nRun it.\n",
        "notes.txt": "Plain notes. Two sentences here.\n\nAnother paragraph.\n",
    }


async def test_first_ingest_writes_files_chunks_and_embeddings(
    db: Database, database: ConnectTarget, tmp_path: Path, stub: OllamaStub
) -> None:
    repo = make_repo(tmp_path / "repo", base_files())
    settings = ingest_settings(database, tmp_path / "home", stub.url)
    result = await ingest_repository(db, settings, repo, name="demo")

    assert result.repo == "demo"
    assert result.commit == git(repo, "rev-parse", "HEAD")
    assert result.files_seen == 6
    assert result.files_changed == 6
    assert result.files_skipped == 0
    assert result.chunks_written > 6
    assert result.embedding_space == f"ollama:nomic-embed-text/{DIMENSIONS}"
    async with db.connection() as conn:
        rows = await conn.fetch("SELECT path, start_line, end_line, content, commit FROM mahavishnu.chunks")
        distinct = await conn.fetchval("SELECT count(DISTINCT content_hash) FROM mahavishnu.chunks")
        missing = await conn.fetchval(
            """SELECT count(*) FROM mahavishnu.chunks c WHERE NOT EXISTS (
                   SELECT 1 FROM mahavishnu.embeddings e WHERE e.content_hash = c.content_hash
                   AND e.space_id = (SELECT id FROM mahavishnu.embedding_spaces WHERE provider = 'ollama'))"""
        )
        root = await conn.fetchval("SELECT root_path FROM mahavishnu.repositories WHERE name = 'demo'")
    assert root == str(repo.resolve())
    assert missing == 0
    assert result.embeddings_computed == distinct
    assert len(rows) == result.chunks_written
    for row in rows:
        lines = split_lines((repo / row["path"]).read_text())
        assert "\n".join(lines[row["start_line"] - 1 : row["end_line"]]) == row["content"]
        assert row["commit"] == result.commit
    # Every distinct content was sent once (the probe aside).
    assert stub.stats.texts == distinct + 1


async def test_a_large_first_ingest_checks_foreign_keys_by_index_not_by_scanning_its_files(
    database: ConnectTarget, tmp_path: Path, stub: OllamaStub
) -> None:
    """Each chunk row's foreign-key check keeps the plan its connection made when the first batch had put a
    few hundred files in: a scan of every file. Without a fresh analysis, 2,000 one-chunk files read about
    a million file rows (n²/2; 66,600 with the analysis); the files table is analyzed once the run has written
    enough of them."""
    files: dict[str, str | bytes] = {f"pkg{i // 100}/m{i}.py": f"VALUE_{i} = {i}\n" for i in range(2000)}
    repo = make_repo(tmp_path / "repo", files)
    settings = ingest_settings(
        database, tmp_path / "home", stub.url, file_batch_size=200, batch_max_chunks=1000
    )
    conn = await connect(database)
    try:
        # As maintenance leaves a new database: its empty tables analyzed (PostgreSQL then believes them empty).
        await conn.execute("VACUUM (ANALYZE)")
    finally:
        await conn.close()
    db = await Database(database, PoolConfig(min_size=1, max_size=5)).open()
    try:
        result = await ingest_repository(db, settings, repo, name="many")
    finally:
        await db.close()  # its backends report their statistics as they exit
    assert result.files_changed == 2000 and result.chunks_written == 2000
    conn = await connect(database)
    try:
        for _ in range(100):
            await conn.execute("SELECT pg_stat_clear_snapshot()")
            row = await conn.fetchrow(
                """SELECT n_tup_ins, seq_tup_read, analyze_count FROM pg_stat_user_tables
                   WHERE relid = 'mahavishnu.source_files'::regclass"""
            )
            chunks_inserted = await conn.fetchval(
                "SELECT n_tup_ins FROM pg_stat_user_tables WHERE relid = 'mahavishnu.chunks'::regclass"
            )
            if chunks_inserted == 2000:
                break
            await asyncio.sleep(0.05)
    finally:
        await conn.close()
    assert chunks_inserted == 2000
    assert row is not None and row["n_tup_ins"] == 2000
    assert row["seq_tup_read"] < 300_000, row


async def test_unchanged_reingest_reads_and_embeds_nothing(
    db: Database, database: ConnectTarget, tmp_path: Path, stub: OllamaStub
) -> None:
    repo = make_repo(tmp_path / "repo", base_files())
    settings = ingest_settings(database, tmp_path / "home", stub.url)
    await ingest_repository(db, settings, repo)
    async with db.connection() as conn:
        before = await fingerprint(conn)
    requests = stub.stats.embed_requests

    again = await ingest_repository(db, settings, repo)
    assert again.files_changed == again.files_deleted == again.chunks_written == again.chunks_deleted == 0
    assert again.embeddings_computed == 0
    assert again.files_read == 0
    assert again.files_unchanged == 6
    assert stub.stats.embed_requests == requests  # not even a probe: the space's size is known
    async with db.connection() as conn:
        assert await fingerprint(conn) == before


async def test_edit_delete_rename_add(
    db: Database, database: ConnectTarget, tmp_path: Path, stub: OllamaStub
) -> None:
    repo = make_repo(tmp_path / "repo", base_files())
    # Small chunks: a function each, so an edit changes one chunk of its file.
    settings = ingest_settings(database, tmp_path / "home", stub.url, max_chunk_chars=200)
    first = await ingest_repository(db, settings, repo, name="r")

    gamma = (repo / "src/gamma.py").read_text()
    edited = gamma.replace("step 5 of gamma", "step five of gamma, edited")
    write_files(repo, {"src/gamma.py": edited, "src/delta.py": python_module("delta")}, settle=True)
    os.utime(repo / "src/gamma.py", (1_600_000_100, 1_600_000_100))
    (repo / "src/alpha.py").unlink()
    git(repo, "mv", "src/beta.py", "lib_beta.py")
    commit = commit_all(repo, "edit")
    stub.reset()

    result = await ingest_repository(db, settings, repo, name="r")
    assert result.commit == commit
    assert result.files_added == 2  # delta, and beta under its new name
    assert result.files_modified == 1
    assert result.files_deleted == 2  # alpha, and beta's old path
    assert result.files_changed == 3
    # Only the edited function, delta's and (their headers name the new path) beta's chunks were embedded; the
    # rest of gamma came from the cache.
    async with db.connection() as conn:
        paths = {r["path"] for r in await conn.fetch("SELECT DISTINCT path FROM mahavishnu.chunks")}
        documents = {
            r["path"]: r["documents"]
            for r in await conn.fetch(
                """SELECT path, array_agg(context || E'\\n' || content ORDER BY chunk_index) AS documents
                   FROM mahavishnu.chunks GROUP BY path"""
            )
        }
        commits = dict(await conn.fetch("SELECT DISTINCT path, commit FROM mahavishnu.chunks"))
        head = await conn.fetchval("SELECT head_commit FROM mahavishnu.repositories WHERE name = 'r'")
    assert "src/alpha.py" not in paths and "src/beta.py" not in paths
    assert {"lib_beta.py", "src/delta.py", "src/gamma.py"} <= paths
    # Rewritten files record the new commit; untouched ones keep the commit they were read at (same content).
    assert head == commit
    assert commits["src/gamma.py"] == commits["lib_beta.py"] == commits["src/delta.py"] == commit
    assert commits["README.md"] == first.commit != commit
    # The stub sees each document after nomic-embed-text's document prefix.
    edited_chunks = [d for d in documents["src/gamma.py"] if "step five" in d]
    assert len(edited_chunks) == 1 and len(documents["src/gamma.py"]) == 6
    for document in [*documents["lib_beta.py"], *documents["src/delta.py"], *edited_chunks]:
        assert stub.times_embedded("search_document: " + document) == 1
    for document in documents["src/gamma.py"] + documents["README.md"]:
        assert stub.times_embedded("search_document: " + document) == (document in edited_chunks)
    assert result.embeddings_computed == len(documents["lib_beta.py"]) + len(documents["src/delta.py"]) + 1
    assert result.embeddings_reused == 5  # gamma's other functions

    # The database equals a clean ingest of the same tree into an empty database (but for the commits at which
    # unchanged files were read).
    async with db.connection() as conn:
        incremental = await fingerprint(conn, include_commit=False)
        await conn.execute("TRUNCATE mahavishnu.repositories, mahavishnu.embeddings CASCADE")
    await ingest_repository(db, settings, repo, name="r")
    async with db.connection() as conn:
        assert await fingerprint(conn, include_commit=False) == incremental


async def test_same_content_in_two_repositories_is_embedded_once(
    db: Database, database: ConnectTarget, tmp_path: Path, stub: OllamaStub
) -> None:
    files = base_files()
    one = make_repo(tmp_path / "one", files)
    two = make_repo(tmp_path / "two", files, use_git=False)
    settings = ingest_settings(database, tmp_path / "home", stub.url)
    first = await ingest_repository(db, settings, one)
    second = await ingest_repository(db, settings, two)
    assert first.embeddings_computed > 0
    assert second.embeddings_computed == 0
    assert second.embeddings_reused == first.embeddings_computed
    assert second.commit is None  # a plain folder has no commit


async def test_worker_processes_give_the_same_database_as_a_thread(
    db: Database, database: ConnectTarget, tmp_path: Path, stub: OllamaStub
) -> None:
    files = {
        **base_files(),
        **{f"many/m{i}.py": python_module(f"m{i}", 2) for i in range(10)},
        # Read by a thread while the worker processes start; those it has not reached go to the workers.
        **{f"conf/c{i}.json": f'{{"name": "c{i}", "values": [{i}, {i + 1}]}}\n' for i in range(60)},
    }
    repo = make_repo(tmp_path / "repo", files)
    threaded = ingest_settings(database, tmp_path / "home", stub.url, reader_processes=0)
    await ingest_repository(db, threaded, repo, name="r")
    async with db.connection() as conn:
        expected = await fingerprint(conn)
        await conn.execute("TRUNCATE mahavishnu.repositories, mahavishnu.embeddings CASCADE")
    pooled = ingest_settings(database, tmp_path / "home", stub.url, reader_processes=2, process_min_files=1)
    result = await ingest_repository(db, pooled, repo, name="r")
    assert result.files_changed == len(files)
    async with db.connection() as conn:
        assert await fingerprint(conn) == expected


_THREAD_SLICES: list[int] = []


def _slow_in_the_test_process(*args: Any) -> Any:
    """read_slice, slowed down in this process only (the worker processes import this module afresh)."""
    import time

    if os.environ.get("SLOW_READ_PID") == str(os.getpid()):
        _THREAD_SLICES.append(len(args[0]))
        time.sleep(0.5)
    return _real_read_slice(*args)


async def test_files_the_thread_has_not_read_when_the_workers_are_up_go_to_them(
    db: Database, database: ConnectTarget, tmp_path: Path, stub: OllamaStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from mahavishnu_assets.ingest import reader

    real_start = reader.start_workers

    def slow_start(*args: Any) -> None:  # the thread reads half a second a slice meanwhile
        time.sleep(3)
        real_start(*args)

    monkeypatch.setenv("SLOW_READ_PID", str(os.getpid()))
    monkeypatch.setattr(reader, "read_slice", _slow_in_the_test_process)
    monkeypatch.setattr(reader, "start_workers", slow_start)
    _THREAD_SLICES.clear()
    files = {f"conf/c{i}.json": f'{{"n": {i}}}\n' for i in range(300)}  # no parser: read early
    repo = make_repo(tmp_path / "repo", files)
    pooled = ingest_settings(database, tmp_path / "home", stub.url, reader_processes=2, process_min_files=1)
    result = await ingest_repository(db, pooled, repo, name="r")
    assert result.files_changed == 300 and result.chunks_written == 300
    # The thread kept reading while the workers started (more than a first slice or two), and they finished.
    assert 100 < sum(_THREAD_SLICES) < 300


async def test_a_first_ingest_reads_in_processes_and_an_edit_in_a_thread(
    db: Database, database: ConnectTarget, tmp_path: Path, stub: OllamaStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mahavishnu_assets.ingest import reader

    pools: list[tuple[int, bool]] = []
    real = reader.make_pool

    def recording(files: int, **options: Any) -> Any:
        pool, workers = real(files, **options)
        pools.append((files, pool is not None))
        return pool, workers

    monkeypatch.setattr(reader, "make_pool", recording)
    files = {**base_files(), **{f"many/m{i}.py": python_module(f"m{i}", 2) for i in range(10)}}
    repo = make_repo(tmp_path / "repo", files)
    settings = ingest_settings(database, tmp_path / "home", stub.url, reader_processes=2, process_min_files=5)
    first = await ingest_repository(db, settings, repo, name="r")
    assert first.files_changed == len(files) and pools == [(len(files), True)]

    write_files(repo, {"src/alpha.py": python_module("alpha_edited", 3)})
    commit_all(repo, "edit")
    again = await ingest_repository(db, settings, repo, name="r")
    assert again.files_changed == 1 and pools == [(len(files), True), (1, False)]


def test_worker_processes_only_for_jobs_big_enough() -> None:
    from mahavishnu_assets.ingest import reader

    assert reader._pool_size(10, 2, min_files=11) == 0
    assert reader._pool_size(10, 0, min_files=1) == 0  # processes off: one thread
    assert reader._pool_size(11, 2, min_files=11) == 2


async def test_concurrent_ingests_of_one_repository_take_turns(
    db: Database, database: ConnectTarget, tmp_path: Path, stub: OllamaStub
) -> None:
    import asyncio

    repo = make_repo(tmp_path / "repo", base_files())
    settings = ingest_settings(database, tmp_path / "home", stub.url)
    one, two = await asyncio.gather(
        ingest_repository(db, settings, repo, name="r"), ingest_repository(db, settings, repo, name="r")
    )
    assert sorted([one.files_changed, two.files_changed]) == [0, 6]
    assert one.embeddings_computed + two.embeddings_computed == max(
        one.embeddings_computed, two.embeddings_computed
    )


async def test_shared_contents_across_many_concurrent_batches_are_embedded_once(
    db: Database, database: ConnectTarget, tmp_path: Path, stub: OllamaStub
) -> None:
    # Every file repeats the same boilerplate sections and has one of its own, in batches of one file with
    # several batches in flight and two writers: in-flight vectors are shared, never computed twice.
    shared = "\n\n".join(f"# Shared section {i}\n\nThe same words in every file, part {i}." for i in range(3))
    files = {
        f"docs/page{i:02d}.md": f"{shared}\n\n# Own section\n\nOnly page {i} says this.\n" for i in range(40)
    }
    repo = make_repo(tmp_path / "repo", files)
    settings = ingest_settings(
        database,
        tmp_path / "home",
        stub.url,
        file_batch_size=1,
        pipeline_depth=4,
        writer_connections=2,
        max_chunk_chars=100,
    )
    stub.configure(delay_per_text=0.002, parallel=4)
    result = await ingest_repository(db, settings, repo)
    assert result.files_changed == 40
    async with db.connection() as conn:
        distinct = await conn.fetchval("SELECT count(DISTINCT content_hash) FROM mahavishnu.chunks")
    assert result.embeddings_computed == distinct
    assert max(stub.stats.text_counts.values()) == 1  # the probe's text aside, each content once
