"""Restoring a snapshot over the live tables, atomically.

One READ COMMITTED transaction under ACCESS EXCLUSIVE locks on the live tables: rows whose key is not in the
snapshot are deleted (children first), rows the snapshot holds a copy of are updated in place or inserted
(parents first, so no ON DELETE CASCADE can remove a row that is kept), and rows whose version is still pending
are left alone: they are already right. Either everything commits or nothing does, so a kill at any point
leaves the live data as it was. Identity sequences only ever move forward.

Column lists come from the catalog at run time (generated columns skipped, identity columns written with
OVERRIDING SYSTEM VALUE), so columns other migrations add are carried along; ANN indexes are never touched.
"""

# Dynamic SQL here only interpolates identifiers from TABLES or the catalog, quoted by ident(); every value is
# a bind parameter.
# ruff: noqa: S608

from __future__ import annotations

import asyncpg

from mahavishnu_assets.errors import SnapshotError
from mahavishnu_assets.memory.snapshots.tables import (
    SCHEMA,
    TABLES,
    Column,
    Progress,
    SnapshotTable,
    ident,
    key_match,
    literal,
    qualified,
    report,
    table_columns,
    visible,
)


async def restore_snapshot(
    conn: asyncpg.Connection, snapshot_id: int, progress: Progress | None, *, lock_timeout_ms: int
) -> dict[str, dict[str, int]]:
    """Make the live tables the snapshot's; returns rows deleted, updated and inserted per table.

    The caller holds OPS_LOCK on `conn`. `progress` is called with each step's name.
    """
    counts: dict[str, dict[str, int]] = {t.name: {"deleted": 0, "updated": 0, "inserted": 0} for t in TABLES}
    try:
        async with conn.transaction():
            await conn.execute(f"SET LOCAL lock_timeout = {int(lock_timeout_ms)}")
            await conn.execute(
                "LOCK TABLE " + ", ".join(qualified(t.name) for t in TABLES) + " IN ACCESS EXCLUSIVE MODE"
            )
            await report(progress, "locked")
            await _check_intact(conn, snapshot_id)
            columns = {t.name: await table_columns(conn, t.name) for t in TABLES}
            for table in reversed(TABLES):
                status = await conn.execute(
                    f"""DELETE FROM {qualified(table.name)} t WHERE NOT EXISTS (
                            SELECT 1 FROM {qualified(table.store)} v
                             WHERE {key_match("v", "t", table.key)} AND {visible("v")})""",
                    snapshot_id,
                )
                counts[table.name]["deleted"] = int(status.split()[-1])
                await report(progress, f"deleted:{table.name}")
            for table in TABLES:
                updated, inserted = await _write_copies(conn, table, columns[table.name], snapshot_id)
                counts[table.name]["updated"] = updated
                counts[table.name]["inserted"] = inserted
                await report(progress, f"written:{table.name}")
            for table in TABLES:
                await _advance_sequences(conn, table, columns[table.name])
            await conn.execute(
                f"UPDATE {SCHEMA}.memory_snapshots SET restored_at = now() WHERE id = $1", snapshot_id
            )
            await report(progress, "before_commit")
    except asyncpg.exceptions.LockNotAvailableError:
        raise SnapshotError(
            f"Timed out after {lock_timeout_ms / 1000:.0f}s waiting for the live tables",
            suggestion="Long transactions (an ingest?) hold them; retry when they finish. Nothing changed.",
        ) from None
    except asyncpg.exceptions.IntegrityConstraintViolationError as exc:
        raise SnapshotError(
            f"Snapshot {snapshot_id} cannot be restored over the current data: {exc}",
            suggestion="A table outside the snapshot still references rows it would remove, or a column "
            "added since has no default. Nothing changed.",
        ) from None
    await report(progress, "committed")
    return counts


async def _check_intact(conn: asyncpg.Connection, snapshot_id: int) -> None:
    """Every version still pointing at a live row must find it; otherwise refuse rather than lose rows."""
    for table in TABLES:
        lost = await conn.fetchval(
            f"""SELECT count(*) FROM {qualified(table.store)} v
                 WHERE v.data IS NULL AND {visible("v")}
                   AND NOT EXISTS (SELECT 1 FROM {qualified(table.name)} t
                                    WHERE {key_match("t", "v", table.key)})""",
            snapshot_id,
        )
        if lost:
            raise SnapshotError(
                f"Snapshot {snapshot_id} is damaged: {lost} row(s) of {table.name} changed while its "
                "copy-on-write triggers were bypassed",
                suggestion="Do not disable triggers or use session_replication_role=replica on the memory "
                "tables. Restore another snapshot; nothing changed.",
            )


async def _write_copies(
    conn: asyncpg.Connection, table: SnapshotTable, columns: list[Column], snapshot_id: int
) -> tuple[int, int]:
    """Update (key present) or insert (key absent) the rows the snapshot holds a copy of."""
    writable = [c for c in columns if not c.generated]
    live, store = qualified(table.name), qualified(table.store)
    source = (
        f"FROM {store} v CROSS JOIN LATERAL jsonb_populate_record(NULL::{live}, v.data) r "
        f"WHERE v.data IS NOT NULL AND {visible('v')}"
    )

    def value(col: Column, fallback: str) -> str:
        if col.name in table.typed:
            return f"v.{ident(col.name)}"
        return f"CASE WHEN v.data ? {literal(col.name)} THEN r.{ident(col.name)} ELSE {fallback} END"

    settable = [c for c in writable if c.name not in table.key and not c.identity]
    updated = 0
    if settable:
        assignments = ", ".join(f"{ident(c.name)} = {value(c, 't.' + ident(c.name))}" for c in settable)
        status = await conn.execute(
            f"UPDATE {live} t SET {assignments} {source} AND {key_match('t', 'v', table.key)}",
            snapshot_id,
        )
        updated = int(status.split()[-1])
    names = ", ".join(ident(c.name) for c in writable)
    values = ", ".join(value(c, c.default or "NULL") for c in writable)
    status = await conn.execute(
        f"""INSERT INTO {live} ({names}) OVERRIDING SYSTEM VALUE
            SELECT {values} {source}
               AND NOT EXISTS (SELECT 1 FROM {live} t WHERE {key_match("t", "v", table.key)})""",
        snapshot_id,
    )
    return updated, int(status.split()[-1])


async def _advance_sequences(conn: asyncpg.Connection, table: SnapshotTable, columns: list[Column]) -> None:
    for col in columns:
        if not col.identity:
            continue
        sequence = await conn.fetchval(
            "SELECT pg_get_serial_sequence($1, $2)", f"{SCHEMA}.{table.name}", col.name
        )
        if sequence is None:
            continue
        # Never backwards: ids handed out since the snapshot may live on in other snapshots.
        await conn.execute(
            f"""SELECT setval($1::regclass, m) FROM (SELECT max({ident(col.name)}) AS m
                  FROM {qualified(table.name)}) x
                 WHERE m > coalesce(pg_sequence_last_value($1::regclass), 0)""",
            sequence,
        )
