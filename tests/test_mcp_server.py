"""`mahavishnu serve` as a real process, over stdio and streamable HTTP, driven by the MCP SDK's own client.

The corpus is ingested once per module through the embedding stub; each test starts its own server process.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import MCPError

from mahavishnu_assets.database.embedded import EmbeddedOptions, EmbeddedServer
from mahavishnu_assets.database.migrations import migrate_up
from mahavishnu_assets.database.pool import connect
from mahavishnu_assets.database.server import ensure_database
from mahavishnu_assets.database.target import ConnectTarget
from mahavishnu_assets.testing.ollama_stub import OllamaStub
from tests.conftest import drop_database
from tests.ingest_helpers import DIMENSIONS, fingerprint
from tests.mcp_helpers import (
    SERVER_PY,
    create_database,
    error_text,
    http_client,
    http_server,
    ingest_corpus,
    payload,
    serve_command,
    server_env,
    stdio_client,
)

TOOLS = {
    "search_code",
    "find_symbol",
    "read_lines",
    "list_repositories",
    "remember",
    "recall",
    "snapshot_create",
    "snapshot_list",
}
TOKEN = "s3cret-token-for-tests-0123456789"


@pytest.fixture(scope="module")
def mcp_stub() -> Iterator[OllamaStub]:
    with OllamaStub(dimensions=DIMENSIONS) as server:
        yield server


@pytest.fixture(scope="module")
async def corpus(
    server_target: ConnectTarget,
    template_database: str,
    mcp_stub: OllamaStub,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[ConnectTarget, Path]]:
    database = await create_database(server_target, template_database)
    repo = await ingest_corpus(database, tmp_path_factory.mktemp("corpus"), mcp_stub.url)
    yield database, repo
    await drop_database(server_target, database.database)


@pytest.fixture
def env(corpus: tuple[ConnectTarget, Path], mcp_stub: OllamaStub, tmp_path: Path) -> dict[str, str]:
    return server_env(corpus[0], mcp_stub.url, tmp_path)


async def test_stdio_tools_schemas_and_happy_paths(
    env: dict[str, str], corpus: tuple[ConnectTarget, Path]
) -> None:
    database, repo = corpus
    conn = await connect(database)
    try:
        before = await fingerprint(conn)
    finally:
        await conn.close()
    async with stdio_client(env) as client:
        listed = {t.name: t for t in (await client.list_tools()).tools}
        assert set(listed) == TOOLS
        for tool in listed.values():
            assert tool.description and "\n" not in tool.description and tool.output_schema
        search = listed["search_code"].input_schema
        assert search["required"] == ["query"]
        assert {search["properties"]["k"][key] for key in ("minimum", "maximum", "default")} == {1, 100, 10}
        assert search["properties"]["mode"]["enum"] == ["hybrid", "vector", "text", "symbol"]
        assert listed["read_lines"].input_schema["required"] == ["repo", "path", "start_line", "end_line"]
        assert listed["search_code"].annotations.read_only_hint is True  # type: ignore[union-attr]

        found = payload(await client.call_tool("search_code", {"query": "parse frobnicator config", "k": 3}))
        top = found["results"][0]
        assert top["repo"] == "demo" and top["path"] == "app/server.py" and top["truncated"] is False
        assert {"start_line", "end_line", "score", "symbol", "content", "language"} <= set(top)
        lines = SERVER_PY.split("\n")
        assert top["content"] == "\n".join(lines[top["start_line"] - 1 : top["end_line"]])
        small = payload(await client.call_tool("search_code", {"query": "HTTPServer", "max_chars": 40}))
        for hit in small["results"]:
            assert len(hit["content"]) <= 40
            if hit["truncated"]:
                assert hit["content"].count("\n") == hit["end_line"] - hit["start_line"]
        assert any(hit["truncated"] for hit in small["results"])
        texts = payload(await client.call_tool("search_code", {"query": "user name", "mode": "text"}))
        assert texts["mode"] == "text" and texts["results"][0]["path"] == "app/users.py"

        symbols = payload(await client.call_tool("find_symbol", {"name": "HTTPServer.serve_forever"}))
        [definition] = symbols["results"]
        assert definition["path"] == "app/server.py" and definition["kind"] == "method"
        assert "def serve_forever" in lines[definition["start_line"] - 1]

        read = payload(
            await client.call_tool(
                "read_lines", {"repo": "demo", "path": "app/server.py", "start_line": 6, "end_line": 12}
            )
        )
        assert read["content"] == "\n".join(lines[5:12]) and read["truncated"] is False
        cut = payload(
            await client.call_tool(
                "read_lines",
                {"repo": "demo", "path": "app/server.py", "start_line": 6, "end_line": 12, "max_chars": 30},
            )
        )
        assert cut["truncated"] and cut["content"] == "\n".join(lines[5 : cut["end_line"]])

        [repository] = payload(await client.call_tool("list_repositories", {}))["repositories"]
        assert repository["name"] == "demo" and repository["stale"] is False and repository["files"] == 4

        noted = payload(
            await client.call_tool(
                "remember",
                {"content": "Frobnicator settings are parsed once", "tags": ["config"], "agent": "a1"},
            )
        )
        recalled = payload(
            await client.call_tool("recall", {"query": "frobnicator settings", "tags": ["config"]})
        )
        assert [(r["id"], r["agent"], r["tags"]) for r in recalled["results"]] == [
            (noted["id"], "a1", ["config"])
        ]

        snapshot = payload(await client.call_tool("snapshot_create", {"name": "mcp-test"}))["snapshot"]
        snapshots = payload(await client.call_tool("snapshot_list", {}))["snapshots"]
        assert snapshot["name"] == "mcp-test" and snapshot["id"] in [s["id"] for s in snapshots]

        summary = await client.read_resource("repo://demo/summary")
        data = json.loads(summary.contents[0].text)  # type: ignore[union-attr]
        assert data["name"] == "demo" and data["languages"]["python"] == 2
    # The tools wrote memories and a snapshot, never the corpus.
    conn = await connect(database)
    try:
        assert await fingerprint(conn) == before
    finally:
        await conn.close()


BAD_CALLS: list[tuple[str, dict[str, Any], str]] = [
    ("search_code", {}, "query is required"),
    ("search_code", {"query": "   "}, "The query is empty"),
    ("search_code", {"query": "x" * 2001}, "at most 2000"),
    ("search_code", {"query": 5}, "query must be a string"),
    ("search_code", {"query": "serve", "k": 0}, "k must be from 1 to 100"),
    ("search_code", {"query": "serve", "k": 101}, "k must be from 1 to 100"),
    ("search_code", {"query": "serve", "k": "ten"}, "k must be an integer"),
    ("search_code", {"query": "serve", "mode": "fuzzy"}, "mode must be one of"),
    ("search_code", {"query": "serve", "repo": "nope"}, "No repository named 'nope'"),
    ("search_code", {"query": "serve", "repo": "x'; DROP TABLE mahavishnu.chunks; --"}, "No repository"),
    ("search_code", {"query": "serve", "max_chars": 0}, "max_chars must be from 1"),
    ("find_symbol", {"name": "serve forever"}, "is not an identifier"),
    ("find_symbol", {"name": "serve_forever", "repo": "nope"}, "No repository named"),
    ("read_lines", {"repo": "nope", "path": "a.py", "start_line": 1, "end_line": 2}, "No repository"),
    ("read_lines", {"repo": "demo", "path": "../x.py", "start_line": 1, "end_line": 2}, "leaves the repo"),
    ("read_lines", {"repo": "demo", "path": "/etc/passwd", "start_line": 1, "end_line": 2}, "is absolute"),
    ("read_lines", {"repo": "demo", "path": "app/nope.py", "start_line": 1, "end_line": 2}, "no stored file"),
    ("read_lines", {"repo": "demo", "path": "app/users.py", "start_line": 2, "end_line": 1}, "is before"),
    ("read_lines", {"repo": "demo", "path": "app/users.py", "start_line": -5, "end_line": 1}, "1 or more"),
    ("read_lines", {"repo": "demo", "path": "app/users.py", "start_line": 1, "end_line": 99}, "outside"),
    ("read_lines", {"repo": "demo", "path": "app/users.py", "start_line": 1}, "end_line is required"),
    ("remember", {"content": ""}, "content is empty"),
    ("remember", {"content": "x", "tags": "config"}, "tags must be a list"),
    ("remember", {"content": "x" * 100_001}, "at most 100000"),
    ("recall", {"query": ""}, "The query is empty"),
    ("recall", {"query": "x", "k": 1000}, "k must be from 1 to 100"),
    ("snapshot_create", {"name": "a\x00b"}, "NUL"),
    ("snapshot_list", {"limit": 0}, "limit must be from 1 to 100"),
]


async def test_stdio_bad_arguments_are_one_line_tool_errors(env: dict[str, str]) -> None:
    async with stdio_client(env) as client:
        for name, arguments, expected in BAD_CALLS:
            message = error_text(await client.call_tool(name, arguments))
            assert expected in message, (name, arguments, message)
        with pytest.raises(MCPError, match="No repository named 'nope'"):
            await client.read_resource("repo://nope/summary")
        # The server is still serving after all of that.
        assert payload(await client.call_tool("list_repositories", {}))["repositories"]


async def test_http_requires_the_token_and_accepts_it(env: dict[str, str], tmp_path: Path) -> None:
    with http_server(
        {**env, "MAHAVISHNU_MCP_TOKEN": TOKEN}, tmp_path / "http.log", "--http", "127.0.0.1:0"
    ) as url:
        assert url.startswith("http://127.0.0.1:")
        hello = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
        async with httpx2.AsyncClient(timeout=30) as http:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
                refused = await http.post(url, json=hello, headers=headers)
                assert refused.status_code == 401, headers
        async with http_client(url, token=TOKEN) as client:
            assert {t.name for t in (await client.list_tools()).tools} == TOOLS
            found = payload(await client.call_tool("search_code", {"query": "serve forever", "k": 2}))
            assert found["results"][0]["path"] == "app/server.py"
        assert TOKEN not in (tmp_path / "http.log").read_text()


async def test_http_token_from_a_file(env: dict[str, str], tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    args = ("--http", "127.0.0.1:0", "--token-file", str(token_file))
    with http_server(env, tmp_path / "http.log", *args) as url:
        async with httpx2.AsyncClient(timeout=30) as http:
            assert (
                await http.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
            ).status_code == 401
        async with http_client(url, token=TOKEN) as client:
            assert payload(await client.call_tool("list_repositories", {}))["repositories"]


async def test_http_binds_loopback_by_default_and_refuses_the_network_without_a_token(
    env: dict[str, str], tmp_path: Path
) -> None:
    with http_server(env, tmp_path / "loop.log", "--http", "0") as url:
        assert url.startswith("http://127.0.0.1:")
        async with http_client(url) as client:
            assert payload(await client.call_tool("list_repositories", {}))["repositories"]
    refused = subprocess.run(
        serve_command("--http", "0.0.0.0:0", "--json"), env=env, capture_output=True, text=True, timeout=120
    )
    assert refused.returncode == 2
    error = json.loads(refused.stdout.strip().splitlines()[-1])
    assert error["error"] == "configuration_error" and "without a bearer token" in error["message"]
    with http_server(
        {**env, "MAHAVISHNU_MCP_TOKEN": TOKEN}, tmp_path / "open.log", "--http", "0.0.0.0:0"
    ) as url:
        assert url.startswith("http://0.0.0.0:")
        async with httpx2.AsyncClient(timeout=30) as http:
            anonymous = await http.post(url.replace("0.0.0.0", "127.0.0.1"), json={"id": 1, "method": "ping"})
            assert anonymous.status_code == 401


async def test_a_hung_embedding_server_does_not_block_the_other_tools(
    corpus: tuple[ConnectTarget, Path], mcp_stub: OllamaStub, tmp_path: Path
) -> None:
    env = server_env(corpus[0], mcp_stub.url, tmp_path, MAHAVISHNU_OLLAMA__TIMEOUT_SECONDS="8")
    async with stdio_client(env) as client:
        assert payload(await client.call_tool("list_repositories", {}))
        mcp_stub.configure(hang_seconds=600)
        mcp_stub.reset()
        try:
            search = asyncio.ensure_future(client.call_tool("search_code", {"query": "serve forever"}))
            while mcp_stub.stats.embed_requests == 0:  # the search is now waiting for its embedding
                assert not search.done(), search.result()
                await asyncio.sleep(0.05)
            read = await client.call_tool(
                "read_lines", {"repo": "demo", "path": "app/users.py", "start_line": 1, "end_line": 2}
            )
            symbol = await client.call_tool("find_symbol", {"name": "get_user_name"})
            repositories = await client.call_tool("list_repositories", {})
            texts = await client.call_tool("search_code", {"query": "user name", "mode": "text"})
            assert not search.done()
            assert payload(read)["content"].startswith("def get_user_name")
            assert payload(symbol)["results"][0]["path"] == "app/users.py"
            assert payload(repositories)["repositories"] and payload(texts)["results"]
            assert "no answer within 8s" in error_text(await search)
        finally:
            mcp_stub.configure(hang_seconds=0)


async def test_the_pool_recovers_when_backends_are_terminated(
    env: dict[str, str], corpus: tuple[ConnectTarget, Path]
) -> None:
    async with stdio_client(env) as client:
        assert payload(await client.call_tool("list_repositories", {}))
        admin = await connect(corpus[0])
        try:
            killed = await admin.fetchval(
                """SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                    WHERE datname = current_database() AND application_name = 'mahavishnu'
                      AND pid <> pg_backend_pid()"""
            )
        finally:
            await admin.close()
        assert killed >= 1
        found = payload(await client.call_tool("search_code", {"query": "serve forever"}))
        assert found["results"]
        assert payload(await client.call_tool("list_repositories", {}))["repositories"]


@pytest.fixture(scope="module")
def private_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """A server of this module's own, to stop and start under a running MCP server."""
    server = EmbeddedServer(
        tmp_path_factory.mktemp("mcp-restart"), EmbeddedOptions(max_connections=20, shared_buffers="32MB")
    )
    server.start()
    yield server
    server.stop(mode="immediate")


async def test_the_pool_recovers_after_the_database_restarts(
    private_server: EmbeddedServer, mcp_stub: OllamaStub, tmp_path: Path
) -> None:
    target = private_server.target("mcp_restart")
    await ensure_database(target)
    await migrate_up(target)
    await ingest_corpus(target, tmp_path, mcp_stub.url)
    async with stdio_client(server_env(target, mcp_stub.url, tmp_path)) as client:
        assert payload(await client.call_tool("search_code", {"query": "serve forever"}))["results"]
        await asyncio.to_thread(private_server.stop, "fast")
        down = error_text(await client.call_tool("list_repositories", {}))
        assert "Cannot reach" in down and "password" not in down.lower()
        await asyncio.to_thread(private_server.start)
        # The very next calls succeed: the pool replaced the connections the restart killed.
        assert payload(await client.call_tool("list_repositories", {}))["repositories"]
        assert payload(await client.call_tool("search_code", {"query": "serve forever"}))["results"]
