"""Helpers for the MCP server tests: a corpus database, the real `mahavishnu serve` process, SDK clients."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult

from mahavishnu_assets.database.pool import Database, PoolConfig, connect
from mahavishnu_assets.database.target import ConnectTarget
from mahavishnu_assets.ingest.pipeline import ingest_repository
from tests.ingest_helpers import ingest_settings, make_repo

ROOT = Path(__file__).resolve().parent.parent
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
    """Read the frobnicator's configuration file."""
    return open(path).read()
'''
CORPUS: dict[str, str | bytes] = {
    "app/server.py": SERVER_PY,
    "app/users.py": "def get_user_name(user_id):\n    return lookup(user_id).name\n",
    "web/codec.go": "package codec\n\nfunc (c *Codec) Encode(b []byte) string {\n\treturn string(b)\n}\n",
    "README.md": "# Demo\n\nA small repository the MCP tests search.\n",
}


async def create_database(admin: ConnectTarget, template: str) -> ConnectTarget:
    name = f"t_{uuid.uuid4().hex[:16]}"
    conn = await connect(admin)
    try:
        for attempt in range(5):
            try:
                await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
                break
            except Exception:
                if attempt == 4:
                    raise
                await asyncio.sleep(0.2 * (attempt + 1))  # the template is briefly busy
    finally:
        await conn.close()
    return admin.with_database(name)


async def ingest_corpus(database: ConnectTarget, root: Path, stub_url: str) -> Path:
    repo = make_repo(root / "demo", CORPUS)
    settings = ingest_settings(database, root / "ingest-home", stub_url)
    db = await Database(database, PoolConfig(min_size=1, max_size=5)).open()
    try:
        await ingest_repository(db, settings, repo, name="demo")
    finally:
        await db.close()
    return repo


def server_env(database: ConnectTarget, stub_url: str, home: Path, **extra: str) -> dict[str, str]:
    settings = home / "settings"
    settings.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAHAVISHNU_", "OLLAMA_", "OTEL_"))}
    env.update(
        MAHAVISHNU_SETTINGS_DIR=str(settings),
        MAHAVISHNU_HOME=str(home / "home"),
        MAHAVISHNU_DATABASE_URL=database.libpq_url().get_secret_value(),
        MAHAVISHNU_EMBEDDER="ollama",
        MAHAVISHNU_EMBED_MODEL="nomic-embed-text",
        OLLAMA_HOST=stub_url,
        MAHAVISHNU_OLLAMA__MAX_RETRIES="1",
        MAHAVISHNU_OLLAMA__RETRY_BACKOFF_SECONDS="0.01",
    )
    env.update(extra)
    return env


def serve_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "mahavishnu_assets.cli", "serve", *args]


@asynccontextmanager
async def stdio_client(env: dict[str, str]) -> AsyncIterator[Client]:
    params = StdioServerParameters(command=sys.executable, args=serve_command()[1:], env=env, cwd=str(ROOT))
    async with Client(params) as client:
        yield client


@contextmanager
def http_server(env: dict[str, str], log: Path, *args: str) -> Iterator[str]:
    """`mahavishnu serve --http ...` as a process; yields its URL once it says it listens."""
    with log.open("wb") as err:
        process = subprocess.Popen(
            serve_command(*args), env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err
        )
    try:
        yield wait_for_url(process, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for_url(process: subprocess.Popen[bytes], log: Path, within: float = 120.0) -> str:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = re.search(r"listening on (http://\S+/mcp)", log.read_text(errors="replace"))
        if found:
            return found.group(1)
        if process.poll() is not None:
            raise AssertionError(f"the server exited ({process.returncode}): {log.read_text()[-2000:]}")
        time.sleep(0.1)
    raise AssertionError(f"the server did not start: {log.read_text()[-2000:]}")


@asynccontextmanager
async def http_client(url: str, token: str | None = None) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=300)) as http:
        async with Client(streamable_http_client(url, http_client=http)) as client:
            yield client


def payload(result: CallToolResult) -> dict[str, Any]:
    """A successful result's structured content, checked against its JSON text."""
    assert not result.is_error, result.content
    text = result.content[0].text  # type: ignore[union-attr]
    assert json.loads(text) == result.structured_content
    assert result.structured_content is not None
    return result.structured_content


def error_text(result: CallToolResult) -> str:
    """A tool error's one-line message."""
    assert result.is_error, result.structured_content
    text = result.content[0].text  # type: ignore[union-attr]
    assert "\n" not in text and "Traceback" not in text, text
    return text
