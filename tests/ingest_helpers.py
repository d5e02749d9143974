"""Helpers and fixtures for the ingestion tests: repositories on disk, the embedding stub, fingerprints."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from mahavishnu_assets.database.target import ConnectTarget
from mahavishnu_assets.settings import Settings
from mahavishnu_assets.testing.ollama_stub import OllamaStub

DIMENSIONS = 16
OLD = 1_600_000_000  # an mtime far in the past: files look settled, not freshly written ("racy")


def write_files(root: Path, files: dict[str, str | bytes], *, settle: bool = True) -> None:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        if settle:
            os.utime(path, (OLD, OLD), follow_symlinks=False)


def git(root: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    out = subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True, env=env)
    return out.stdout.strip()


def make_repo(root: Path, files: dict[str, str | bytes], *, use_git: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    write_files(root, files)
    if use_git:
        git(root, "init", "-q", "-b", "main")
        commit_all(root, "initial")
    return root


def commit_all(root: Path, message: str) -> str:
    git(root, "add", "-A")
    git(root, "commit", "-q", "--allow-empty", "-m", message)
    return git(root, "rev-parse", "HEAD")


def python_module(name: str, functions: int = 3) -> str:
    body = [f'"""Module {name}."""', "", "import os", ""]
    for i in range(functions):
        body += [
            "",
            f"def {name}_function_{i}(value):",
            f'    """Return value transformed by step {i} of {name}."""',
            f"    result = value * {i + 1}",
            "    for item in range(3):",
            f"        result += item + {i}",
            "    return result",
            "",
        ]
    return "\n".join(body) + "\n"


def ingest_settings(database: ConnectTarget, home: Path, stub_url: str | None, **ingest: Any) -> Settings:
    ollama: dict[str, Any] = {
        "timeout_seconds": 2.0,
        "max_retries": 2,
        "retry_backoff_seconds": 0.01,
        "batch_size": 16,
        "concurrency": 2,
    }
    if stub_url:
        ollama["host"] = stub_url
    return Settings(
        home=home,
        database_url=database.libpq_url(),
        embedder="ollama" if stub_url else "local",
        embed_model="nomic-embed-text",
        ollama=ollama,
        ingest={"file_batch_size": 4, "batch_max_chunks": 50, **ingest},
    )


@pytest.fixture
def stub() -> Iterator[OllamaStub]:
    with OllamaStub(dimensions=DIMENSIONS) as server:
        yield server


FINGERPRINT_QUERIES = (
    "SELECT name, root_path, head_commit FROM mahavishnu.repositories ORDER BY name",
    """SELECT r.name, f.path, f.content_hash, f.language, f.size_bytes, f.line_count, f.commit
       FROM mahavishnu.source_files f JOIN mahavishnu.repositories r ON r.id = f.repo_id ORDER BY 1, 2""",
    """SELECT r.name, c.path, c.chunk_index, c.language, c.start_line, c.end_line, c.content, c.content_hash,
              c.symbol, c.context, c.commit
       FROM mahavishnu.chunks c JOIN mahavishnu.repositories r ON r.id = c.repo_id ORDER BY 1, 2, 3""",
    """SELECT r.name, s.path, s.reason FROM mahavishnu.skipped_files s
       JOIN mahavishnu.repositories r ON r.id = s.repo_id ORDER BY 1, 2""",
    """SELECT DISTINCT sp.provider, sp.model, sp.dimensions, e.content_hash, e.embedding::text
       FROM mahavishnu.embeddings e
       JOIN mahavishnu.embedding_spaces sp ON sp.id = e.space_id
       WHERE EXISTS (SELECT 1 FROM mahavishnu.chunks c WHERE c.content_hash = e.content_hash)
       ORDER BY 1, 2, 3, 4""",
    """SELECT count(*) FROM mahavishnu.chunks c WHERE NOT EXISTS (
           SELECT 1 FROM mahavishnu.embeddings e WHERE e.content_hash = c.content_hash)""",
    """SELECT r.name, s.path, s.name, s.qualified_name, s.kind, s.language, s.start_line, s.end_line,
              s.repo_id = f.repo_id AND s.path = f.path
       FROM mahavishnu.symbols s JOIN mahavishnu.source_files f ON f.id = s.file_id
       JOIN mahavishnu.repositories r ON r.id = s.repo_id ORDER BY 1, 2, 7, 4""",
)
# The commit columns are the last of the first three queries' rows.
_COMMIT_COLUMNS = {0: 1, 1: 1, 2: 1}


async def fingerprint(conn: asyncpg.Connection, *, include_commit: bool = True) -> str:
    """A digest of everything ingestion leaves, without ids and timestamps (which differ run to run).

    Files record the commit at which they were ingested, so an incremental ingest and a fresh one of the same
    tree differ only there: compare those with include_commit=False.
    """
    digest = hashlib.sha256()
    for i, query in enumerate(FINGERPRINT_QUERIES):
        drop = 0 if include_commit else _COMMIT_COLUMNS.get(i, 0)
        for row in await conn.fetch(query):
            values = tuple(row)
            digest.update(repr(values[: len(values) - drop]).encode())
        digest.update(b"|")
    return digest.hexdigest()


async def table_counts(conn: asyncpg.Connection) -> dict[str, int]:
    out = {}
    for table in ("repositories", "source_files", "chunks", "embeddings", "skipped_files", "symbols"):
        out[table] = await conn.fetchval(f"SELECT count(*) FROM mahavishnu.{table}")  # noqa: S608
    return out
