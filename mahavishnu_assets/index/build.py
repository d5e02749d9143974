"""Building and dropping ANN indexes without ever leaving an INVALID one behind.

`CREATE INDEX CONCURRENTLY` commits an invalid catalog entry first and fills it afterwards; if the build is
cancelled, fails or its process dies, that entry stays, slows every write and is never used. So: builds run on
a dedicated connection holding a per-space advisory lock; a failed or cancelled build cancels its backend and
drops its index; and before every build, invalid `ann_*` indexes of the space that no running build owns are
dropped (the leftovers of a killed process).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass

import asyncpg

from mahavishnu_assets.database.pool import connect
from mahavishnu_assets.database.target import ConnectTarget
from mahavishnu_assets.errors import AnnIndexError
from mahavishnu_assets.index.plan import SCHEMA, IndexPlan, create_index_sql, parse_index_name
from mahavishnu_assets.index.registry import live_indexes

logger = logging.getLogger(__name__)

LOCK_CLASS = 0x616E6E  # "ann": advisory lock (class, space_id) held while a space's index changes
APPLICATION_NAME = "mahavishnu-ann-build"
CLEANUP_LOCK_TIMEOUT_SECONDS = 120


@dataclass(frozen=True)
class BuildResult:
    name: str
    seconds: float
    maintenance_work_mem: str


@asynccontextmanager
async def space_lock(target: ConnectTarget, space_id: int) -> AsyncIterator[asyncpg.Connection]:
    """A dedicated connection holding the space's advisory lock; AnnIndexError if another holds it."""
    conn = await connect(target)
    try:
        await conn.execute(f"SET application_name = '{APPLICATION_NAME}'")
        # If this process dies mid-build, the server notices the lost client and aborts the build instead of
        # finishing an index nobody will record.
        await conn.execute("SET client_connection_check_interval = '2s'")
        got = await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", LOCK_CLASS, int(space_id))
        if not got:
            raise AnnIndexError(
                f"Another process is building the ANN index of embedding space {space_id}",
                suggestion="Wait for it to finish (see `mahavishnu status`), then run `mahavishnu index` again.",
                space_id=space_id,
            )
        yield conn
    finally:
        with suppress(Exception):
            await asyncio.wait_for(conn.close(), timeout=10)
        if not conn.is_closed():
            conn.terminate()


async def drop_index(conn: asyncpg.Connection, name: str) -> None:
    if parse_index_name(name) is None:
        raise ValueError(f"refusing to drop {name!r}: not an index this project built")
    await conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {SCHEMA}.{name}", timeout=None)


async def drop_unusable(conn: asyncpg.Connection, space_id: int, keep: str | None) -> list[str]:
    """Drop the space's invalid indexes and valid ones that are not `keep` (a killed rebuild's leftovers).

    Call only while holding the space's lock: then no build of ours is running on them, and one that
    pg_stat_progress_create_index still shows (someone else's) is left alone.
    """
    dropped = []
    for index in await live_indexes(conn):
        if index.space_id != space_id or index.building or index.name == keep:
            continue
        logger.warning(
            "Dropping %s ANN index %s of space %s",
            "invalid" if not index.valid else "stale",
            index.name,
            space_id,
        )
        await drop_index(conn, index.name)
        dropped.append(index.name)
    return dropped


async def drop_invalid_everywhere(target: ConnectTarget) -> list[str]:
    """Drop every invalid `ann_*` index whose space no build is holding, and the indexes of spaces that no
    longer exist (their rows went with the space)."""
    dropped: list[str] = []
    conn = await connect(target)
    try:
        existing = {r[0] for r in await conn.fetch("SELECT id FROM mahavishnu.embedding_spaces")}
        for index in await live_indexes(conn):
            if index.building or index.space_id is None:
                continue
            if index.valid and index.space_id in existing:
                continue
            locked = await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", LOCK_CLASS, index.space_id)
            if not locked:
                continue
            try:
                await drop_index(conn, index.name)
                dropped.append(index.name)
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1, $2)", LOCK_CLASS, index.space_id)
    finally:
        await conn.close()
    return dropped


async def build_index(
    conn: asyncpg.Connection,
    target: ConnectTarget,
    plan: IndexPlan,
    space_id: int,
    name: str,
    maintenance_work_mem_mb: int,
) -> BuildResult:
    """CREATE INDEX CONCURRENTLY on `conn` (which holds the space lock); on any failure nothing is left."""
    sql = create_index_sql(plan, space_id, name)
    pid = await conn.fetchval("SELECT pg_backend_pid()")
    memory = f"{int(maintenance_work_mem_mb)}MB"
    await conn.execute(f"SET maintenance_work_mem = '{memory}'")
    started = time.perf_counter()
    logger.info("Building %s: %s (maintenance_work_mem=%s)", name, sql, memory)
    done = False
    try:
        await conn.execute(sql, timeout=None)
        done = True
    except asyncpg.PostgresError as exc:
        raise AnnIndexError(
            f"Building the {plan.method} index of embedding space {space_id} failed: "
            f"{exc.__class__.__name__}: {exc}",
            space_id=space_id,
        ) from None
    finally:
        if not done:
            await asyncio.shield(_abandon(target, pid, name))
    with suppress(Exception):
        await conn.execute("RESET maintenance_work_mem")
    return BuildResult(name, time.perf_counter() - started, memory)


async def _abandon(target: ConnectTarget, pid: int, name: str) -> None:
    """Stop a build that did not finish and drop its index, from a fresh connection."""
    try:
        conn = await connect(target)
    except Exception as exc:  # the server is gone: the next build drops the leftover
        logger.warning("Could not clean up the failed build of %s: %s", name, exc)
        return
    try:
        for _ in range(300):
            active = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND state = 'active'", pid
            )
            if not active:
                break
            await conn.execute("SELECT pg_cancel_backend($1)", pid)
            await asyncio.sleep(0.1)
        # DROP INDEX CONCURRENTLY waits for transactions still using the table; bounded, so a stuck client
        # cannot hold this process forever (the next build or `mahavishnu maintain` finishes the job).
        await conn.execute(f"SET lock_timeout = '{CLEANUP_LOCK_TIMEOUT_SECONDS}s'")
        await drop_index(conn, name)
        logger.warning("Dropped %s after its build did not finish", name)
    except Exception as exc:
        logger.warning("Could not drop %s after a failed build (the next build will): %s", name, exc)
    finally:
        await conn.close()
