"""`mahavishnu_assets.api` in process on a real database, with a repository ingested through the embedding stub."""

from __future__ import annotations

from pathlib import Path

import pytest

from mahavishnu_assets.api import MAX_QUERY_CHARS, Memory, open_memory
from mahavishnu_assets.database.pool import Database, connect
from mahavishnu_assets.database.target import ConnectTarget
from mahavishnu_assets.errors import ArgumentError, EmbeddingError, NotFoundError, SearchError
from mahavishnu_assets.ingest.pipeline import ingest_repository
from mahavishnu_assets.settings import Settings
from mahavishnu_assets.testing.ollama_stub import OllamaStub
from tests import ingest_helpers
from tests.ingest_helpers import commit_all, ingest_settings, make_repo, write_files

stub = ingest_helpers.stub  # the fixture

SERVER_PY = '''"""A tiny server."""

import socket


class HTTPServer:
    """Serves requests."""

    def serve_forever(self):
        while True:
            self.handle()

    def handle(self):
        return None


def parse_frobnicator_config(path):
    return open(path).read()
'''
# A language without a tree-sitter grammar is chunked in overlapping line windows (40 lines, 5 shared).
TABLE_C = "".join(f"int value_{i} = {i};\n" if i % 7 else "\n" for i in range(1, 121))
FILES: dict[str, str | bytes] = {
    "app/server.py": SERVER_PY,
    "app/table.c": TABLE_C,
    "web/codec.go": "package codec\n\nfunc (c *Codec) Encode(b []byte) string {\n\treturn string(b)\n}\n",
    "data/blob.bin": b"\x00\x01\x02binary\x00" * 10,
}


@pytest.fixture
async def demo(
    db: Database, database: ConnectTarget, tmp_path: Path, stub: OllamaStub
) -> tuple[Memory, Path]:
    repo = make_repo(tmp_path / "demo", FILES)
    settings = ingest_settings(database, tmp_path / "home", stub.url)
    await ingest_repository(db, settings, repo, name="demo")
    memory = Memory(db, settings)
    yield memory, repo
    await memory.aclose()


async def test_search_finds_code_and_refuses_bad_arguments(demo: tuple[Memory, Path]) -> None:
    memory, _ = demo
    for mode in ("hybrid", "vector", "text"):
        found = await memory.search("parse frobnicator config", mode=mode, k=3)
        assert found["results"][0]["path"] == "app/server.py", mode
    found = await memory.search("serve forever", repo="demo", path_prefix="app/", language="python", k=2)
    assert {h["path"] for h in found["results"]} == {"app/server.py"}
    with pytest.raises(NotFoundError, match="No repository named 'nope'"):
        await memory.search("serve", repo="nope")
    empty = await memory.search("serve", repo="nope", missing_repo="empty")
    assert empty["results"] == [] and empty["notices"]
    with pytest.raises(SearchError, match="empty"):
        await memory.search("   ")
    with pytest.raises(SearchError, match=f"at most {MAX_QUERY_CHARS}"):
        await memory.search("x" * (MAX_QUERY_CHARS + 1))
    with pytest.raises(SearchError, match="k must be"):
        await memory.search("serve", k=0)
    with pytest.raises(SearchError, match="Unknown search mode"):
        await memory.search("serve", mode="fuzzy")


async def test_find_symbol_gives_the_definition_line(demo: tuple[Memory, Path]) -> None:
    memory, repo = demo
    lines = (repo / "app/server.py").read_text().split("\n")
    found = await memory.find_symbol("serve_forever")
    assert [(h["path"], h["kind"], h["symbol"]) for h in found] == [
        ("app/server.py", "method", "HTTPServer.serve_forever")
    ]
    assert "def serve_forever" in lines[found[0]["start_line"] - 1]
    assert found[0]["end_line"] >= found[0]["start_line"]
    qualified = await memory.find_symbol("HTTPServer.serve_forever", repo="demo")
    assert [h["start_line"] for h in qualified] == [found[0]["start_line"]]
    assert await memory.find_symbol("Elsewhere.serve_forever") == []
    module = await memory.find_symbol("server.parse_frobnicator_config")
    # A leading part may name the module (the file), which is not part of the qualified name.
    assert [(h["kind"], h["symbol"]) for h in module] == [("function", "parse_frobnicator_config")]
    klass = await memory.find_symbol("HTTPServer")
    assert [(h["kind"], h["start_line"]) for h in klass] == [("class", lines.index("class HTTPServer:") + 1)]
    go = await memory.find_symbol("Encode")
    assert [(h["path"], h["kind"], h["start_line"]) for h in go] == [("web/codec.go", "method", 3)]
    # A word that is only used, never defined, is no definition.
    assert await memory.find_symbol("socket") == []
    with pytest.raises(NotFoundError):
        await memory.find_symbol("serve_forever", repo="nope")
    with pytest.raises(ArgumentError, match="not an identifier"):
        await memory.find_symbol("serve forever; DROP TABLE x")


async def test_read_lines_joins_stored_chunks_exactly(demo: tuple[Memory, Path]) -> None:
    memory, repo = demo
    for path in ("app/server.py", "app/table.c"):
        original = (repo / path).read_text().split("\n")[:-1]  # the text ends with a newline
        whole = await memory.read_lines("demo", path, 1, len(original))
        assert whole["content"].split("\n") == original, path
        assert whole["line_count"] == len(original)
        # Ranges crossing chunk boundaries (the .c windows overlap by 5 lines) and single lines.
        for start, end in ((36, 45), (40, 41), (7, 7), (1, 120)):
            if end <= len(original):
                got = await memory.read_lines("demo", "./" + path, start, end)
                assert got["content"].split("\n") == original[start - 1 : end], (path, start, end)
                assert (got["start_line"], got["end_line"]) == (start, end)
    # What is stored, never the disk: an edit after the ingest does not show.
    write_files(repo, {"app/server.py": "changed\n"})
    assert (await memory.read_lines("demo", "app/server.py", 1, 1))["content"] == '"""A tiny server."""'


@pytest.mark.parametrize(
    ("repo", "path", "start", "end", "error", "message"),
    [
        ("nope", "app/server.py", 1, 2, NotFoundError, "No repository named"),
        ("demo", "app/missing.py", 1, 2, NotFoundError, "has no stored file"),
        ("demo", "data/blob.bin", 1, 2, NotFoundError, "skipped at ingest: binary"),
        ("demo", "../demo/app/server.py", 1, 2, ArgumentError, "leaves the repository"),
        ("demo", "app/../../x", 1, 2, ArgumentError, "leaves the repository"),
        ("demo", "/etc/passwd", 1, 2, ArgumentError, "is absolute"),
        ("demo", "C:\\x.py", 1, 2, ArgumentError, "is absolute"),
        ("demo", "app/server.py", 5, 4, ArgumentError, "is before start_line"),
        ("demo", "app/server.py", -1, 4, ArgumentError, "must be 1 or more"),
        ("demo", "app/server.py", 0, 0, ArgumentError, "must be 1 or more"),
        ("demo", "app/server.py", 1, 500, ArgumentError, "which has 18 stored lines"),
        ("demo", "", 1, 2, ArgumentError, "path is empty"),
        ("demo", "app/server.py", True, 2, ArgumentError, "must be an integer"),
    ],
)
async def test_read_lines_refuses_bad_arguments(
    demo: tuple[Memory, Path], repo: str, path: str, start: int, end: int, error: type, message: str
) -> None:
    memory, _ = demo
    with pytest.raises(error, match=message):
        await memory.read_lines(repo, path, start, end)


async def test_list_repositories_counts_and_staleness(
    demo: tuple[Memory, Path], db: Database, tmp_path: Path, stub: OllamaStub
) -> None:
    memory, repo = demo
    [listed] = await memory.list_repositories()
    async with db.connection() as conn:
        files = await conn.fetchval("SELECT count(*) FROM mahavishnu.source_files")
        chunks = await conn.fetchval("SELECT count(*) FROM mahavishnu.chunks")
        commit = await conn.fetchval("SELECT head_commit FROM mahavishnu.repositories")
    assert (listed["name"], listed["files"], listed["chunks"]) == ("demo", files, chunks)
    assert listed["commit"] == commit and listed["stale"] is False and listed["last_ingested_at"]
    write_files(repo, {"app/new.py": "x = 1\n"})
    commit_all(repo, "more")
    plain = make_repo(tmp_path / "plain", {"a.py": "def a():\n    return 1\n"}, use_git=False)
    await ingest_repository(memory.db, memory.settings, plain, name="plain")
    listed_now = {r["name"]: r for r in await memory.list_repositories()}
    assert listed_now["demo"]["stale"] is True and listed_now["plain"]["stale"] is None
    summary = await memory.repository("demo")
    assert summary["languages"] == {"python": 1, "c": 1, "go": 1} and summary["skipped"] == {"binary": 1}
    with pytest.raises(NotFoundError):
        await memory.repository("nope")


async def test_remember_and_recall_with_tags(demo: tuple[Memory, Path]) -> None:
    memory, _ = demo
    first = await memory.remember("The auth tokens rotate every hour", tags=["auth", "ops"], agent="planner")
    second = await memory.remember("Parsing of frobnicator config lives in app/server.py", tags=["code"])
    assert second > first
    found = await memory.recall("frobnicator config parsing", k=2)
    assert found[0]["id"] == second and found[0]["tags"] == ["code"] and found[0]["agent"] is None
    assert -1 <= found[0]["score"] <= 1
    tagged = await memory.recall("frobnicator config parsing", tags=["auth"])
    assert [(r["id"], r["agent"], r["tags"]) for r in tagged] == [(first, "planner", ["auth", "ops"])]
    assert await memory.recall("anything", tags=["auth", "code"]) == []
    with pytest.raises(ArgumentError, match="tags must be a list"):
        await memory.remember("x", tags="auth")  # type: ignore[arg-type]
    with pytest.raises(ArgumentError, match="content is empty"):
        await memory.remember(" ")
    with pytest.raises(SearchError, match="empty"):
        await memory.recall("")


async def test_snapshots(demo: tuple[Memory, Path]) -> None:
    memory, _ = demo
    made = await memory.snapshot_create("before-change")
    assert made["name"] == "before-change" and made["stats"]
    assert [s["id"] for s in await memory.snapshot_list()] == [made["id"]]
    with pytest.raises(ArgumentError):
        await memory.snapshot_create("\x00")


async def test_a_hung_embedding_server_is_an_error_within_the_timeout(
    demo: tuple[Memory, Path], stub: OllamaStub
) -> None:
    memory, _ = demo
    memory.settings.ollama.timeout_seconds = 0.5
    hung = Memory(memory.db, memory.settings)
    stub.configure(hang_seconds=120)
    try:
        with pytest.raises(EmbeddingError, match=r"no answer within 0.5s"):
            await hung.search("serve forever", mode="vector")
        # Text search and reads never wait for the embedder.
        assert (await hung.search("serve forever", mode="text"))["results"]
        assert await hung.find_symbol("serve_forever")
    finally:
        stub.configure(hang_seconds=0)
        await hung.aclose()


async def test_reads_survive_terminated_backends(demo: tuple[Memory, Path], database: ConnectTarget) -> None:
    memory, _ = demo
    assert await memory.list_repositories()
    admin = await connect(database)
    try:
        killed = await admin.fetchval(
            """SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                WHERE datname = current_database() AND pid <> pg_backend_pid()"""
        )
    finally:
        await admin.close()
    assert killed >= 1
    assert [r["name"] for r in await memory.list_repositories()] == ["demo"]
    assert (await memory.read_lines("demo", "app/server.py", 1, 1))["line_count"] == 18


async def test_open_memory_starts_and_migrates(test_settings: Settings) -> None:
    async with open_memory(test_settings) as memory:
        assert await memory.list_repositories() == []
        assert (await memory.search("anything", mode="text"))["results"] == []
