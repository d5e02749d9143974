"""Crash safety: `mahavishnu ingest` SIGKILLed mid-run (twice), then re-run, equals a clean run."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mahavishnu_assets.database.migrations import migrate_up
from mahavishnu_assets.database.pool import Database, PoolConfig, connect
from mahavishnu_assets.database.target import ConnectTarget
from mahavishnu_assets.ingest import checks
from mahavishnu_assets.testing.ollama_stub import OllamaStub
from tests.ingest_helpers import commit_all, fingerprint, make_repo, python_module, write_files

FILES = 24


def _env(target: ConnectTarget, settings_dir: Path, home: Path, stub: OllamaStub) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAHAVISHNU_")}
    env.update(
        {
            "MAHAVISHNU_DATABASE_URL": target.libpq_url().get_secret_value(),
            "MAHAVISHNU_SETTINGS_DIR": str(settings_dir),
            "MAHAVISHNU_HOME": str(home),
            "MAHAVISHNU_EMBEDDER": "ollama",
            "OLLAMA_HOST": stub.url,
            "MAHAVISHNU_OLLAMA__BATCH_SIZE": "4",
            "MAHAVISHNU_OLLAMA__RETRY_BACKOFF_SECONDS": "0.01",
            "MAHAVISHNU_INGEST__FILE_BATCH_SIZE": "2",
            "MAHAVISHNU_INGEST__PIPELINE_DEPTH": "2",
            # Small chunks: several per file, so a run lasts long enough to be killed mid-way.
            "MAHAVISHNU_INGEST__MAX_CHUNK_CHARS": "150",
        }
    )
    return env


def _command(repo: Path) -> list[str]:
    code = "import sys; from mahavishnu_assets.cli import main; sys.exit(main())"
    return [sys.executable, "-c", code, "ingest", str(repo), "--name", "crashy", "--json"]


def _ingest(repo: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        _command(repo),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def _count(target: ConnectTarget, sql: str) -> int:
    conn = await connect(target)
    try:
        return int(await conn.fetchval(sql))
    finally:
        await conn.close()


async def _kill_when(
    target: ConnectTarget, process: subprocess.Popen[str], commit: str, files_at_least: int
) -> int:
    """SIGKILL the ingest once that many files of `commit` are committed; returns how many were."""
    conn = await connect(target)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            committed = int(
                await conn.fetchval("SELECT count(*) FROM mahavishnu.source_files WHERE commit = $1", commit)
            )
            if committed >= files_at_least:
                process.send_signal(signal.SIGKILL)
                process.wait()
                return committed
            assert process.poll() is None, process.communicate()
            await asyncio.sleep(0.01)
    finally:
        await conn.close()
    raise AssertionError("the ingest made no progress")


async def _consistent(target: ConnectTarget) -> None:
    db = await Database(target, PoolConfig(min_size=1, max_size=2)).open()
    try:
        async with db.connection() as conn:
            space = await conn.fetchval("SELECT id FROM mahavishnu.embedding_spaces")
            for outcome in (
                await checks.embeddings_complete(conn, "crashy", space),
                await checks.no_orphans(conn, "crashy"),
                await checks.line_ranges_valid(conn, "crashy"),
            ):
                assert outcome.passed, outcome
    finally:
        await db.close()


async def test_sigkill_mid_ingest_then_rerun_equals_a_clean_run(
    database: ConnectTarget, empty_database: ConnectTarget, settings_dir: Path, tmp_path: Path
) -> None:
    """Two databases hold the first version; the second version goes into one with two SIGKILLs and a re-run,
    into the other in one clean run. They must end identical, commits included."""
    await migrate_up(empty_database)
    repo = make_repo(tmp_path / "repo", {f"src/m{i:02d}.py": python_module(f"m{i}", 3) for i in range(FILES)})
    with OllamaStub(dimensions=16) as stub:
        env = _env(database, settings_dir, tmp_path / "home", stub)
        clean_env = _env(empty_database, settings_dir, tmp_path / "home2", stub)
        for target_env in (env, clean_env):
            done = subprocess.run(_command(repo), env=target_env, capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stderr
        # The second version: edits, a deletion and new files.
        write_files(repo, {f"src/m{i:02d}.py": python_module(f"m{i}_v2", 3) for i in range(0, FILES, 2)})
        write_files(repo, {f"new/n{i}.py": python_module(f"n{i}") for i in range(6)})
        (repo / "src/m01.py").unlink()
        head = commit_all(repo, "second version")

        stub.configure(delay_per_text=0.01)  # slow enough to be killed mid-way
        first = _ingest(repo, env)
        killed_at = await _kill_when(database, first, head, 3)
        await _consistent(database)
        second = _ingest(repo, env)
        killed_again = await _kill_when(database, second, head, killed_at + 4)
        await _consistent(database)
        stub.configure(delay_per_text=0)

        final = subprocess.run(_command(repo), env=env, capture_output=True, text=True, timeout=120)
        assert final.returncode == 0, final.stderr
        result = json.loads(final.stdout.strip().splitlines()[-1])
        # It resumed: there was work left.
        assert result["files_changed"] > 0, (killed_at, killed_again, result)
        statuses = await _count(
            database, "SELECT count(*) FROM mahavishnu.ingest_runs WHERE status = 'abandoned'"
        )
        assert statuses == 2

        clean = subprocess.run(_command(repo), env=clean_env, capture_output=True, text=True, timeout=120)
        assert clean.returncode == 0, clean.stderr

    for target in (database, empty_database):
        await _consistent(target)
    prints = []
    for target in (database, empty_database):
        conn = await connect(target)
        try:
            prints.append(await fingerprint(conn))
        finally:
            await conn.close()
    assert prints[0] == prints[1]
