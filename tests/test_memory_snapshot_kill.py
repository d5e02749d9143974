"""A restore killed with SIGKILL at any step leaves the live data exactly as it was; a rerun then succeeds."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from mahavishnu_assets.database.pool import Database, connect
from mahavishnu_assets.database.target import ConnectTarget
from mahavishnu_assets.memory.snapshots import SnapshotManager
from mahavishnu_assets.settings import Settings
from tests.test_memory_snapshots import churn, digest, seed

CHILD = """
import asyncio, os, sys
from pydantic import SecretStr
from mahavishnu_assets.database.pool import Database, PoolConfig
from mahavishnu_assets.database.target import target_from_url
from mahavishnu_assets.memory.snapshots import SnapshotManager
from mahavishnu_assets.settings import Settings

async def main():
    target = target_from_url(SecretStr(os.environ["CHILD_DSN"]))
    db = await Database(target, PoolConfig(min_size=1, max_size=2, application_name="restore-child")).open()
    stop_at = os.environ["STOP_AT"]

    async def progress(step):
        print(step, flush=True)
        if step == stop_at:
            await asyncio.sleep(3600)

    await SnapshotManager(db, Settings()).restore(int(sys.argv[1]), safety_snapshot=False, progress=progress)
    print("finished", flush=True)

asyncio.run(main())
"""


async def _run_child_until(database: ConnectTarget, snapshot_id: int, stop_at: str) -> list[str]:
    env = {**os.environ, "CHILD_DSN": database.libpq_url().get_secret_value(), "STOP_AT": stop_at}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        str(snapshot_id),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=str(Path(__file__).resolve().parents[1]),
    )
    assert proc.stdout is not None
    seen: list[str] = []
    try:
        while True:
            line = await asyncio.wait_for(proc.stdout.readline(), timeout=60)
            if not line:
                err = await proc.stderr.read() if proc.stderr else b""
                raise AssertionError(f"child ended before {stop_at}: {seen} {err.decode()[-2000:]}")
            seen.append(line.decode().strip())
            if seen[-1] == stop_at:
                break
    finally:
        if proc.returncode is None:
            os.kill(proc.pid, signal.SIGKILL)
        await proc.wait()
    return seen


@pytest.mark.parametrize("stop_at", ["locked", "deleted:chunks", "written:embeddings", "before_commit"])
async def test_sigkill_mid_restore_leaves_old_state(
    db: Database, database: ConnectTarget, stop_at: str
) -> None:
    sm = SnapshotManager(db, Settings())
    async with db.connection() as conn:
        await seed(conn, files=4, chunks_per_file=6)
        at_snapshot = await digest(conn)
    snap = await sm.create("target")
    async with db.connection() as conn:
        await churn(conn)
        before = await digest(conn)
    assert before != at_snapshot

    steps = await _run_child_until(database, snap["id"], stop_at)
    assert steps[-1] == stop_at and "finished" not in steps

    watcher = await connect(database)
    try:
        # The killed client's backend notices, rolls back and exits; wait for it rather than guess a delay.
        deadline = asyncio.get_running_loop().time() + 30
        while await watcher.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'restore-child'"
        ):
            assert asyncio.get_running_loop().time() < deadline, "the killed restore's backend never ended"
            await asyncio.sleep(0.05)
        assert await digest(watcher) == before
        assert (
            await watcher.fetchval(
                "SELECT restored_at FROM mahavishnu.memory_snapshots WHERE id = $1", snap["id"]
            )
            is None
        )
    finally:
        await watcher.close()

    # Nothing was damaged: the same restore now runs to the end.
    await sm.restore(snap["id"], safety_snapshot=False)
    async with db.connection() as conn:
        assert await digest(conn) == at_snapshot
