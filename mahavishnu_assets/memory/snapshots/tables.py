"""The snapshotted tables, their version tables, and the SQL pieces and locks every snapshot step shares."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg

from mahavishnu_assets.errors import SnapshotError

SCHEMA = "mahavishnu"
# Held exclusively by a snapshot being taken, shared by the copy-on-write triggers (same literal in 0030).
CAPTURE_LOCK = 120260534390273
# Serialises snapshot operations (create, restore, delete, retention) among themselves.
OPS_LOCK = 120260534390274

Progress = Callable[[str], Awaitable[None] | None]


@dataclass(frozen=True)
class SnapshotTable:
    """A live table in a snapshot, its version table, key, and the columns its versions store typed."""

    name: str
    store: str
    key: tuple[str, ...]
    typed: tuple[str, ...] = ()
    searchable: bool = False


# Parents before children: restore writes in this order and deletes in the reverse one.
TABLES: tuple[SnapshotTable, ...] = (
    SnapshotTable("repositories", "snap_repositories", ("id",)),
    SnapshotTable("embedding_spaces", "snap_embedding_spaces", ("id",)),
    SnapshotTable("source_files", "snap_source_files", ("id",)),
    SnapshotTable("chunks", "snap_chunks", ("id",), searchable=True),
    SnapshotTable("symbols", "snap_symbols", ("id",)),
    SnapshotTable("embeddings", "snap_embeddings", ("space_id", "content_hash"), ("embedding",)),
    SnapshotTable("memories", "snap_memories", ("id",), ("embedding",), searchable=True),
)
TABLE_NAMES = tuple(t.name for t in TABLES)


@dataclass(frozen=True)
class Column:
    name: str
    identity: bool
    generated: bool
    default: str | None


def ident(name: str) -> str:
    """Quote an identifier taken from our allowlist or the catalog."""
    return '"' + name.replace('"', '""') + '"'


def qualified(table: str) -> str:
    return f"{SCHEMA}.{ident(table)}"


def literal(text: str) -> str:
    """A SQL string literal for a catalog-derived name."""
    return "'" + text.replace("'", "''") + "'"


def visible(alias: str) -> str:
    """The version rows of `alias` that belong to snapshot $1."""
    return f"{alias}.first_snapshot <= $1 AND ({alias}.until_snapshot IS NULL OR {alias}.until_snapshot > $1)"


def key_match(left: str, right: str, key: Sequence[str]) -> str:
    return " AND ".join(f"{left}.{ident(k)} = {right}.{ident(k)}" for k in key)


async def table_columns(conn: asyncpg.Connection, table: str) -> list[Column]:
    """The live table's columns now: other migrations may have added some since this code was written."""
    rows = await conn.fetch(
        """SELECT a.attname, a.attidentity <> '' AS identity, a.attgenerated <> '' AS generated,
                  pg_get_expr(d.adbin, d.adrelid) AS default_expr
             FROM pg_attribute a
             LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
            WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped
            ORDER BY a.attnum""",
        f"{SCHEMA}.{table}",
    )
    return [Column(r["attname"], r["identity"], r["generated"], r["default_expr"]) for r in rows]


def snapshot_dict(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "created_at": row["created_at"].isoformat(),
        "restored_at": row["restored_at"].isoformat() if row["restored_at"] else None,
        "partition_key": row["partition_key"],
        "stats": row["stats"] or {},
    }


async def report(progress: Progress | None, step: str) -> None:
    if progress is None:
        return
    result = progress(step)
    if result is not None:
        await result


@asynccontextmanager
async def advisory_lock(
    conn: asyncpg.Connection, key: int, what: str, timeout_ms: int
) -> AsyncIterator[None]:
    """Hold a session advisory lock for the block, waiting at most `timeout_ms` for it."""
    await conn.execute(f"SET lock_timeout = {int(timeout_ms)}")
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", key)
    except asyncpg.exceptions.LockNotAvailableError:
        raise SnapshotError(
            f"Timed out after {timeout_ms / 1000:.0f}s waiting to {what}",
            suggestion="Another snapshot operation or a long write transaction is running; retry later, "
            "or raise memory.snapshot_lock_timeout_seconds.",
        ) from None
    try:
        yield
    finally:
        if not conn.is_closed():
            await conn.execute("SELECT pg_advisory_unlock($1)", key)
