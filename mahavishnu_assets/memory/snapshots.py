"""Memory snapshots: consistent point-in-time copies of the memory and the corpus that share unchanged rows.

Design
------
Each snapshotted table (repositories, embedding_spaces, source_files, chunks, embeddings, memories) has a
version table `snap_<table>` keyed like it. A version row says: "the row with this key, as written by the
transaction `row_xmin`, belongs to every snapshot id in [first_snapshot, until_snapshot)". Its `data` column is
NULL while the live row is still that version, so the snapshot points at the live row instead of copying it.

* Create (one REPEATABLE READ transaction): a full outer join of the live `(key, xmin)` pairs against the open
  versions (`until_snapshot IS NULL`) closes the versions whose row changed or vanished and opens a narrow
  version row for every new or changed row. Rows unchanged since the previous snapshot cost nothing: their open
  version simply stays valid. No row data is copied at all, so the first snapshot of 100,000 chunks costs about
  the time to write 100,000 narrow rows (with the version table's key built once afterwards), and the next ones
  only the join. Tables no committed transaction touched since the last snapshot (statement triggers record
  `(table, xid)` in `snapshot_touches`, transactionally) are not even joined.
* Copy on write: statement-level triggers on the live tables (migration 0030) copy the old values into every
  version still pointing at a row just before it is updated, deleted or truncated. Ingesting inserts pays
  nothing; an update or delete pays one keyed UPDATE of the versions table, and none when no snapshot exists.
  The triggers take a shared advisory lock that a snapshot holds exclusively from before its transaction
  snapshot until it has committed, so a version it records is always visible to the trigger that must fill it.
  A REPEATABLE READ or SERIALIZABLE writer that started before a snapshot committed cannot see that snapshot's
  versions; its trigger raises a serialization failure instead (detected through `snapshot_clock`), and the
  writer retries.
* Restore (one READ COMMITTED transaction under ACCESS EXCLUSIVE locks on the live tables): rows whose key is
  not in the snapshot are deleted (children first), rows the snapshot holds a copy of are updated in place or
  inserted (parents first, so no ON DELETE CASCADE can remove a row that is kept), and rows whose version is
  still pending are left alone: they are already right. Either everything commits or nothing does, so a kill at
  any point leaves the live data as it was. Identity sequences only ever move forward.
* Delete and retention remove the snapshot row, then the versions no remaining snapshot id falls into.

Column lists come from the catalog at run time (generated columns skipped, identity columns written with
OVERRIDING SYSTEM VALUE), so columns other migrations add are carried along; ANN indexes are never touched.
Cache entries, sessions and metrics are not part of a snapshot: they are short-lived, and restoring a session
would bring back tokens that were revoked.
"""

# Dynamic SQL here only interpolates identifiers from TABLES or the catalog, quoted by ident(); every value is
# a bind parameter.
# ruff: noqa: S608

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from mahavishnu_assets.database.pool import Database
from mahavishnu_assets.errors import NotFoundError, SnapshotError
from mahavishnu_assets.settings import Settings

logger = logging.getLogger(__name__)

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


def _visible(alias: str) -> str:
    return f"{alias}.first_snapshot <= $1 AND ({alias}.until_snapshot IS NULL OR {alias}.until_snapshot > $1)"


def _key_match(left: str, right: str, key: Sequence[str]) -> str:
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


def _snapshot_dict(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "created_at": row["created_at"].isoformat(),
        "restored_at": row["restored_at"].isoformat() if row["restored_at"] else None,
        "partition_key": row["partition_key"],
        "stats": row["stats"] or {},
    }


async def _report(progress: Progress | None, step: str) -> None:
    if progress is None:
        return
    result = progress(step)
    if result is not None:
        await result


class SnapshotManager:
    """Create, list, restore, search and expire memory snapshots (see the module docstring)."""

    def __init__(self, db: Database, settings: Settings | None = None) -> None:
        from mahavishnu_assets.settings import load_settings

        self.db = db
        self.settings = settings or load_settings()

    # -- locking -----------------------------------------------------------------
    async def _lock(self, conn: asyncpg.Connection, key: int, what: str) -> None:
        timeout_ms = int(self.settings.memory.snapshot_lock_timeout_seconds * 1000)
        await conn.execute(f"SET lock_timeout = {timeout_ms}")
        try:
            await conn.execute("SELECT pg_advisory_lock($1)", key)
        except asyncpg.exceptions.LockNotAvailableError:
            raise SnapshotError(
                f"Timed out after {timeout_ms / 1000:.0f}s waiting to {what}",
                suggestion="Another snapshot operation or a long write transaction is running; retry later, "
                "or raise memory.snapshot_lock_timeout_seconds.",
            ) from None

    async def _unlock(self, conn: asyncpg.Connection, key: int) -> None:
        if not conn.is_closed():
            await conn.execute("SELECT pg_advisory_unlock($1)", key)

    # -- create ------------------------------------------------------------------
    async def create(self, name: str | None = None, *, partition_key: str | None = None) -> dict[str, Any]:
        """Take a consistent snapshot of the memory and the corpus in one REPEATABLE READ transaction."""
        async with self.db.connection() as conn:
            await self._lock(conn, OPS_LOCK, "take a snapshot")
            try:
                return await self._create_locked(conn, name, partition_key)
            finally:
                await self._unlock(conn, OPS_LOCK)

    async def _create_locked(
        self, conn: asyncpg.Connection, name: str | None, partition_key: str | None
    ) -> dict[str, Any]:
        started = time.perf_counter()
        # Taken before the transaction so its snapshot sees every writer that finished preserving rows.
        await self._lock(conn, CAPTURE_LOCK, "take a snapshot (writers are updating snapshotted rows)")
        try:
            return await self._capture_all(conn, name, partition_key, started)
        except asyncpg.exceptions.LockNotAvailableError:
            raise SnapshotError(
                "Timed out waiting for a lock while taking the snapshot",
                suggestion="A snapshot search or maintenance held the version tables; retry. Nothing was saved.",
            ) from None
        finally:
            await self._unlock(conn, CAPTURE_LOCK)

    async def _capture_all(
        self, conn: asyncpg.Connection, name: str | None, partition_key: str | None, started: float
    ) -> dict[str, Any]:
        async with conn.transaction(isolation="repeatable_read"):
            row = await conn.fetchrow(
                f"""INSERT INTO {SCHEMA}.memory_snapshots (name, partition_key)
                    VALUES (coalesce($1, 'snapshot-' || to_char(now() AT TIME ZONE 'UTC',
                            'YYYY-MM-DD"T"HH24:MI:SS"Z"')), $2)
                    RETURNING id""",
                name,
                partition_key,
            )
            assert row is not None
            snapshot_id = int(row["id"])
            # Tables no transaction visible to us changed since the last snapshot keep their open versions.
            touched = {
                r["table_name"]
                for r in await conn.fetch(f"DELETE FROM {SCHEMA}.snapshot_touches RETURNING table_name")
            }
            first = not await conn.fetchval(
                f"SELECT EXISTS (SELECT 1 FROM {SCHEMA}.memory_snapshots WHERE id < $1)", snapshot_id
            )
            tables: dict[str, dict[str, int]] = {}
            for table in TABLES:
                compare = first or table.name in touched
                tables[table.name] = await self._capture(conn, table, snapshot_id, compare=compare)
            stats = {
                "compared_tables": sorted(t.name for t in TABLES if first or t.name in touched),
                "rows": {t: v["rows"] for t, v in tables.items()},
                "new_versions": {t: v["added"] for t, v in tables.items()},
                "closed_versions": {t: v["closed"] for t, v in tables.items()},
                "total_rows": sum(v["rows"] for v in tables.values()),
                "shared_rows": sum(v["rows"] - v["added"] for v in tables.values()),
                "seconds": round(time.perf_counter() - started, 4),
            }
            await conn.execute(
                f"UPDATE {SCHEMA}.memory_snapshots SET stats = $2 WHERE id = $1", snapshot_id, stats
            )
            # Lets REPEATABLE READ writers that started earlier detect this snapshot (see 0030).
            await conn.execute(
                f"SELECT setval('{SCHEMA}.snapshot_clock', pg_current_xact_id()::text::bigint)"
            )
            result = await conn.fetchrow(
                f"SELECT * FROM {SCHEMA}.memory_snapshots WHERE id = $1", snapshot_id
            )
        logger.info(
            "Snapshot %s taken: %s rows, %s new versions",
            snapshot_id,
            stats["total_rows"],
            sum(tables[t]["added"] for t in tables),
        )
        assert result is not None
        return _snapshot_dict(result)

    async def _capture(
        self, conn: asyncpg.Connection, table: SnapshotTable, snapshot_id: int, *, compare: bool = True
    ) -> dict[str, int]:
        store = qualified(table.store)
        if not compare:
            rows = await conn.fetchval(f"SELECT count(*) FROM {store} WHERE until_snapshot IS NULL")
            return {"rows": int(rows), "added": 0, "closed": 0}
        keys = ", ".join(ident(k) for k in table.key)
        if not await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {store})"):
            return await self._capture_bulk(conn, table, snapshot_id)
        coalesced = ", ".join(f"coalesce(l.{ident(k)}, o.{ident(k)}) AS {ident(k)}" for k in table.key)
        sql = f"""
            WITH live AS (SELECT {keys}, xmin AS row_xmin FROM {qualified(table.name)}),
            open AS (SELECT {keys}, row_xmin, first_snapshot FROM {store} WHERE until_snapshot IS NULL),
            diff AS (
                SELECT {coalesced}, l.row_xmin AS live_xmin, o.first_snapshot AS open_first
                  FROM live l FULL JOIN open o ON {_key_match("o", "l", table.key)} AND o.row_xmin = l.row_xmin
                 WHERE l.row_xmin IS NULL OR o.first_snapshot IS NULL
            ),
            closed AS (
                UPDATE {store} s SET until_snapshot = $1 FROM diff d
                 WHERE d.live_xmin IS NULL AND {_key_match("s", "d", table.key)} AND s.first_snapshot = d.open_first
                RETURNING 1
            ),
            added AS (
                INSERT INTO {store} ({keys}, row_xmin, first_snapshot)
                SELECT {keys}, live_xmin, $1 FROM diff WHERE open_first IS NULL
                RETURNING 1
            )
            SELECT (SELECT count(*) FROM closed) AS closed, (SELECT count(*) FROM added) AS added
        """
        row = await conn.fetchrow(sql, snapshot_id)
        rows = await conn.fetchval(
            f"SELECT count(*) FROM {store} v WHERE {_visible('v')}",
            snapshot_id,
        )
        assert row is not None
        return {"rows": int(rows), "added": int(row["added"]), "closed": int(row["closed"])}

    async def _capture_bulk(
        self, conn: asyncpg.Connection, table: SnapshotTable, snapshot_id: int
    ) -> dict[str, int]:
        """No versions yet (first snapshot, or all released): every live row is new. Writing them without the
        primary key and building it afterwards is several times cheaper than maintaining it row by row; the
        DDL is part of this transaction, so a failure leaves the key as it was."""
        keys = ", ".join(ident(k) for k in table.key)
        store = qualified(table.store)
        constraint = ident(f"{table.store}_pkey")
        await conn.execute(f"ALTER TABLE {store} DROP CONSTRAINT {constraint}")
        status = await conn.execute(
            f"""INSERT INTO {store} ({keys}, row_xmin, first_snapshot)
                SELECT {keys}, xmin, $1 FROM {qualified(table.name)}""",
            snapshot_id,
        )
        await conn.execute(
            f"ALTER TABLE {store} ADD CONSTRAINT {constraint} PRIMARY KEY ({keys}, first_snapshot)"
        )
        added = int(status.split()[-1])
        return {"rows": added, "added": added, "closed": 0}

    # -- read --------------------------------------------------------------------
    async def get(self, snapshot_id: int) -> dict[str, Any]:
        async with self.db.connection() as conn:
            row = await conn.fetchrow(f"SELECT * FROM {SCHEMA}.memory_snapshots WHERE id = $1", snapshot_id)
        if row is None:
            raise NotFoundError(f"Snapshot {snapshot_id} does not exist")
        return _snapshot_dict(row)

    async def list_all(self, *, limit: int | None = None, name: str | None = None) -> list[dict[str, Any]]:
        async with self.db.connection() as conn:
            rows = await conn.fetch(
                f"""SELECT * FROM {SCHEMA}.memory_snapshots
                     WHERE $2::text IS NULL OR name = $2
                     ORDER BY created_at DESC, id DESC LIMIT $1""",
                limit,
                name,
            )
        return [_snapshot_dict(r) for r in rows]

    # -- delete and retention ----------------------------------------------------
    async def delete(self, snapshot_id: int) -> dict[str, Any]:
        async with self.db.connection() as conn:
            await self._lock(conn, OPS_LOCK, "delete a snapshot")
            try:
                async with conn.transaction():
                    deleted = await self._delete_locked(conn, [snapshot_id])
            finally:
                await self._unlock(conn, OPS_LOCK)
        if not deleted:
            raise NotFoundError(f"Snapshot {snapshot_id} does not exist")
        return deleted[0]

    async def _delete_locked(self, conn: asyncpg.Connection, ids: list[int]) -> list[dict[str, Any]]:
        rows = await conn.fetch(
            f"DELETE FROM {SCHEMA}.memory_snapshots WHERE id = ANY($1::bigint[]) RETURNING *", ids
        )
        if not rows:
            return []
        newest_left = await conn.fetchval(f"SELECT max(id) FROM {SCHEMA}.memory_snapshots")
        if newest_left is None or newest_left < max(r["id"] for r in rows):
            # The newest snapshot goes with its open versions: the next one must compare every table again.
            await conn.execute(
                f"""INSERT INTO {SCHEMA}.snapshot_touches (table_name, xid)
                    SELECT t, pg_current_xact_id() FROM unnest($1::text[]) t ON CONFLICT DO NOTHING""",
                list(TABLE_NAMES),
            )
        released = 0
        for table in TABLES:
            # Only versions that covered a deleted snapshot can have lost their last reader.
            status = await conn.execute(
                f"""DELETE FROM {qualified(table.store)} v
                     WHERE EXISTS (SELECT 1 FROM unnest($1::bigint[]) d(id)
                                    WHERE v.first_snapshot <= d.id
                                      AND (v.until_snapshot IS NULL OR v.until_snapshot > d.id))
                       AND NOT EXISTS (SELECT 1 FROM {SCHEMA}.memory_snapshots s
                                        WHERE s.id >= v.first_snapshot
                                          AND (v.until_snapshot IS NULL OR s.id < v.until_snapshot))""",
                [r["id"] for r in rows],
            )
            released += int(status.split()[-1])
        out = []
        for r in rows:
            item = _snapshot_dict(r)
            item["versions_released"] = released
            out.append(item)
        return out

    async def cleanup(
        self, *, keep: int | None = None, max_age_days: int | None = None, now: datetime | None = None
    ) -> list[dict[str, Any]]:
        """Apply retention: keep the newest `keep`, drop the older ones and any older than `max_age_days`.

        The newest snapshot is never removed, however old: a memory always keeps one way back.
        """
        mem = self.settings.memory
        keep = mem.snapshot_retention_count if keep is None else keep
        max_age_days = mem.snapshot_retention_days if max_age_days is None else max_age_days
        if keep < 1:
            raise SnapshotError("Retention must keep at least one snapshot", suggestion="Use keep >= 1.")
        async with self.db.connection() as conn:
            await self._lock(conn, OPS_LOCK, "apply snapshot retention")
            try:
                async with conn.transaction():
                    cutoff = (now or await conn.fetchval("SELECT now()")) - timedelta(days=max_age_days)
                    ids = await conn.fetch(
                        f"""SELECT id FROM (
                                SELECT id, created_at,
                                       row_number() OVER (ORDER BY created_at DESC, id DESC) AS rank
                                  FROM {SCHEMA}.memory_snapshots) s
                             WHERE rank > 1 AND (rank > $1 OR created_at < $2)""",
                        keep,
                        cutoff,
                    )
                    return await self._delete_locked(conn, [r["id"] for r in ids])
            finally:
                await self._unlock(conn, OPS_LOCK)

    # -- restore -----------------------------------------------------------------
    async def restore(
        self,
        snapshot_id: int,
        *,
        safety_snapshot: bool | None = None,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        """Make the live data exactly the snapshot's, atomically.

        With `safety_snapshot` (default from settings) the current state is snapshotted first, so a restore
        can itself be undone. `progress` is called with each step's name (also used by the crash tests).
        """
        if safety_snapshot is None:
            safety_snapshot = self.settings.memory.restore_safety_snapshot
        started = time.perf_counter()
        async with self.db.connection() as conn:
            await self._lock(conn, OPS_LOCK, "restore a snapshot")
            try:
                target = await conn.fetchrow(
                    f"SELECT * FROM {SCHEMA}.memory_snapshots WHERE id = $1", snapshot_id
                )
                if target is None:
                    raise NotFoundError(f"Snapshot {snapshot_id} does not exist")
                safety = None
                if safety_snapshot:
                    safety = await self._create_locked(conn, f"before-restore-of-{snapshot_id}", None)
                    await _report(progress, "safety_snapshot")
                counts = await self._restore_locked(conn, snapshot_id, progress)
            finally:
                await self._unlock(conn, OPS_LOCK)
        result = _snapshot_dict(await self._fetch(snapshot_id))
        return {
            "snapshot": result,
            "restored": counts,
            "safety_snapshot": safety,
            "seconds": round(time.perf_counter() - started, 4),
        }

    async def _fetch(self, snapshot_id: int) -> asyncpg.Record:
        async with self.db.connection() as conn:
            row = await conn.fetchrow(f"SELECT * FROM {SCHEMA}.memory_snapshots WHERE id = $1", snapshot_id)
        if row is None:
            raise NotFoundError(f"Snapshot {snapshot_id} does not exist")
        return row

    async def _restore_locked(
        self, conn: asyncpg.Connection, snapshot_id: int, progress: Progress | None
    ) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {
            t.name: {"deleted": 0, "updated": 0, "inserted": 0} for t in TABLES
        }
        timeout_ms = int(self.settings.memory.snapshot_lock_timeout_seconds * 1000)
        try:
            async with conn.transaction():
                await conn.execute(f"SET LOCAL lock_timeout = {timeout_ms}")
                await conn.execute(
                    "LOCK TABLE " + ", ".join(qualified(t.name) for t in TABLES) + " IN ACCESS EXCLUSIVE MODE"
                )
                await _report(progress, "locked")
                await self._check_intact(conn, snapshot_id)
                columns = {t.name: await table_columns(conn, t.name) for t in TABLES}
                for table in reversed(TABLES):
                    status = await conn.execute(
                        f"""DELETE FROM {qualified(table.name)} t WHERE NOT EXISTS (
                                SELECT 1 FROM {qualified(table.store)} v
                                 WHERE {_key_match("v", "t", table.key)} AND {_visible("v")})""",
                        snapshot_id,
                    )
                    counts[table.name]["deleted"] = int(status.split()[-1])
                    await _report(progress, f"deleted:{table.name}")
                for table in TABLES:
                    updated, inserted = await self._write_copies(
                        conn, table, columns[table.name], snapshot_id
                    )
                    counts[table.name]["updated"] = updated
                    counts[table.name]["inserted"] = inserted
                    await _report(progress, f"written:{table.name}")
                for table in TABLES:
                    await self._advance_sequences(conn, table, columns[table.name])
                await conn.execute(
                    f"UPDATE {SCHEMA}.memory_snapshots SET restored_at = now() WHERE id = $1", snapshot_id
                )
                await _report(progress, "before_commit")
        except asyncpg.exceptions.LockNotAvailableError:
            raise SnapshotError(
                f"Timed out after {timeout_ms / 1000:.0f}s waiting for the live tables",
                suggestion="Long transactions (an ingest?) hold them; retry when they finish. Nothing changed.",
            ) from None
        except asyncpg.exceptions.IntegrityConstraintViolationError as exc:
            raise SnapshotError(
                f"Snapshot {snapshot_id} cannot be restored over the current data: {exc}",
                suggestion="A table outside the snapshot still references rows it would remove, or a column "
                "added since has no default. Nothing changed.",
            ) from None
        await _report(progress, "committed")
        return counts

    async def _check_intact(self, conn: asyncpg.Connection, snapshot_id: int) -> None:
        """Every version still pointing at a live row must find it; otherwise refuse rather than lose rows."""
        for table in TABLES:
            lost = await conn.fetchval(
                f"""SELECT count(*) FROM {qualified(table.store)} v
                     WHERE v.data IS NULL AND {_visible("v")}
                       AND NOT EXISTS (SELECT 1 FROM {qualified(table.name)} t
                                        WHERE {_key_match("t", "v", table.key)})""",
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
        self, conn: asyncpg.Connection, table: SnapshotTable, columns: list[Column], snapshot_id: int
    ) -> tuple[int, int]:
        """Update (key present) or insert (key absent) the rows the snapshot holds a copy of."""
        writable = [c for c in columns if not c.generated]
        live, store = qualified(table.name), qualified(table.store)
        source = (
            f"FROM {store} v CROSS JOIN LATERAL jsonb_populate_record(NULL::{live}, v.data) r "
            f"WHERE v.data IS NOT NULL AND {_visible('v')}"
        )

        def value(col: Column, fallback: str) -> str:
            if col.name in table.typed:
                return f"v.{ident(col.name)}"
            return f"CASE WHEN v.data ? {_literal(col.name)} THEN r.{ident(col.name)} ELSE {fallback} END"

        settable = [c for c in writable if c.name not in table.key and not c.identity]
        updated = 0
        if settable:
            assignments = ", ".join(f"{ident(c.name)} = {value(c, 't.' + ident(c.name))}" for c in settable)
            status = await conn.execute(
                f"UPDATE {live} t SET {assignments} {source} AND {_key_match('t', 'v', table.key)}",
                snapshot_id,
            )
            updated = int(status.split()[-1])
        names = ", ".join(ident(c.name) for c in writable)
        values = ", ".join(value(c, c.default or "NULL") for c in writable)
        status = await conn.execute(
            f"""INSERT INTO {live} ({names}) OVERRIDING SYSTEM VALUE
                SELECT {values} {source}
                   AND NOT EXISTS (SELECT 1 FROM {live} t WHERE {_key_match("t", "v", table.key)})""",
            snapshot_id,
        )
        return updated, int(status.split()[-1])

    async def _advance_sequences(
        self, conn: asyncpg.Connection, table: SnapshotTable, columns: list[Column]
    ) -> None:
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

    # -- search and stats --------------------------------------------------------
    async def search(
        self,
        query: str,
        *,
        snapshot_id: int | None = None,
        k: int = 20,
        tables: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Full-text search over the chunks and memories as they were in a snapshot (default: the newest)."""
        if not query.strip():
            raise SnapshotError("The search query is empty", suggestion="Give some words to search for.")
        wanted = set(tables or ("chunks", "memories"))
        unknown = wanted - {"chunks", "memories"}
        if unknown:
            raise SnapshotError(
                f"Cannot search {sorted(unknown)} in snapshots", suggestion="Search chunks or memories."
            )
        async with self.db.connection() as conn:
            if snapshot_id is None:
                snapshot_id = await conn.fetchval(
                    f"SELECT id FROM {SCHEMA}.memory_snapshots ORDER BY created_at DESC, id DESC LIMIT 1"
                )
                if snapshot_id is None:
                    raise NotFoundError("There are no snapshots to search")
            elif not await conn.fetchval(
                f"SELECT 1 FROM {SCHEMA}.memory_snapshots WHERE id = $1", snapshot_id
            ):
                raise NotFoundError(f"Snapshot {snapshot_id} does not exist")
            config = self.settings.memory.snapshot_search_config
            stored = await _stored_text_vector(conn, "chunks")
            if stored is not None:
                config = stored[2] or config
            parts = []
            if "chunks" in wanted:
                live_doc = f"c.{ident(stored[0])}" if stored else "to_tsvector($2::regconfig, c.content)"
                copy_doc = (
                    f"(SELECT {stored[1]} FROM (SELECT r.*) AS rr)"
                    if stored
                    else "to_tsvector($2::regconfig, r.content)"
                )
                parts.append(
                    f"""SELECT 'chunks' AS source, v.id, c.content, c.path, c.start_line, c.end_line,
                               NULL::text AS memory_type, ts_rank({live_doc}, q.q) AS rank
                          FROM {SCHEMA}.snap_chunks v JOIN {SCHEMA}.chunks c ON c.id = v.id, q
                         WHERE v.data IS NULL AND {_visible("v")} AND {live_doc} @@ q.q"""
                )
                parts.append(
                    f"""SELECT 'chunks', v.id, r.content, r.path, r.start_line, r.end_line, NULL,
                               ts_rank(d.doc, q.q)
                          FROM {SCHEMA}.snap_chunks v
                         CROSS JOIN LATERAL jsonb_populate_record(NULL::{SCHEMA}.chunks, v.data) r
                         CROSS JOIN LATERAL (SELECT {copy_doc} AS doc) d, q
                         WHERE v.data IS NOT NULL AND {_visible("v")} AND d.doc @@ q.q"""
                )
            if "memories" in wanted:
                parts.append(
                    f"""SELECT 'memories', v.id, m.content, NULL, NULL, NULL, m.memory_type,
                               ts_rank(to_tsvector($2::regconfig, m.content), q.q)
                          FROM {SCHEMA}.snap_memories v JOIN {SCHEMA}.memories m ON m.id = v.id, q
                         WHERE v.data IS NULL AND {_visible("v")}
                           AND to_tsvector($2::regconfig, m.content) @@ q.q"""
                )
                parts.append(
                    f"""SELECT 'memories', v.id, v.data->>'content', NULL, NULL, NULL, v.data->>'memory_type',
                               ts_rank(to_tsvector($2::regconfig, v.data->>'content'), q.q)
                          FROM {SCHEMA}.snap_memories v, q
                         WHERE v.data IS NOT NULL AND {_visible("v")}
                           AND to_tsvector($2::regconfig, v.data->>'content') @@ q.q"""
                )
            try:
                rows = await self._search_rows(conn, parts, snapshot_id, config, query, k)
            except asyncpg.exceptions.UndefinedObjectError:
                raise SnapshotError(
                    f"Text search configuration {config!r} does not exist on this server",
                    suggestion="Set memory.snapshot_search_config to one listed in pg_ts_config (english, simple).",
                ) from None
        return [_hit(snapshot_id, r) for r in rows]

    async def _search_rows(
        self, conn: asyncpg.Connection, parts: list[str], snapshot_id: int, config: str, query: str, k: int
    ) -> list[asyncpg.Record]:
        rows = await conn.fetch(
            f"""WITH q AS (SELECT websearch_to_tsquery($2::regconfig, $3) AS q),
                hits AS (SELECT * FROM ({" UNION ALL ".join(parts)}) x
                          ORDER BY rank DESC, source, id LIMIT $4)
                SELECT hits.*, ts_headline($2::regconfig, content, q.q,
                                           'MaxFragments=2, MaxWords=20, MinWords=5') AS headline
                  FROM hits, q ORDER BY rank DESC, source, id""",
            snapshot_id,
            config,
            query,
            k,
        )
        return list(rows)

    async def stats(self) -> dict[str, Any]:
        """How many snapshots, how many row versions back them, and how much sharing saves."""
        async with self.db.connection() as conn:
            snapshots = await conn.fetch(
                f"SELECT id, stats FROM {SCHEMA}.memory_snapshots ORDER BY created_at, id"
            )
            tables: dict[str, Any] = {}
            for table in TABLES:
                row = await conn.fetchrow(
                    f"""SELECT count(*) AS versions, count(*) FILTER (WHERE data IS NOT NULL) AS copied,
                               count(*) FILTER (WHERE until_snapshot IS NULL) AS open,
                               pg_total_relation_size($1::regclass) AS bytes
                          FROM {qualified(table.store)}""",
                    f"{SCHEMA}.{table.store}",
                )
                assert row is not None
                tables[table.name] = dict(row)
        logical = sum(int((s["stats"] or {}).get("total_rows", 0)) for s in snapshots)
        versions = sum(int(t["versions"]) for t in tables.values())
        return {
            "snapshots": len(snapshots),
            "oldest_id": snapshots[0]["id"] if snapshots else None,
            "newest_id": snapshots[-1]["id"] if snapshots else None,
            "logical_rows": logical,
            "stored_versions": versions,
            "copied_rows": sum(int(t["copied"]) for t in tables.values()),
            "sharing_ratio": round(logical / versions, 3) if versions else None,
            "bytes": sum(int(t["bytes"]) for t in tables.values()),
            "tables": tables,
        }


async def _stored_text_vector(conn: asyncpg.Connection, table: str) -> tuple[str, str, str | None] | None:
    """A stored generated tsvector column of the live table (the search index's), if there is one.

    Returns its name, its generation expression (to apply to copied rows alike) and the text search
    configuration it names, so snapshot search ranks both kinds of row the way live search does and the
    live rows' terms come from the column (and its GIN index) instead of being recomputed.
    """
    row = await conn.fetchrow(
        """SELECT a.attname, pg_get_expr(d.adbin, d.adrelid) AS expr
             FROM pg_attribute a JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
            WHERE a.attrelid = $1::regclass AND a.attgenerated = 's' AND NOT a.attisdropped
              AND a.atttypid = 'tsvector'::regtype
            ORDER BY a.attnum LIMIT 1""",
        f"{SCHEMA}.{table}",
    )
    if row is None:
        return None
    found = re.search(r"'([A-Za-z_][A-Za-z0-9_.]*)'::regconfig", row["expr"])
    return row["attname"], row["expr"], found.group(1) if found else None


def _hit(snapshot_id: int, r: asyncpg.Record) -> dict[str, Any]:
    return {
        "snapshot_id": snapshot_id,
        "table": r["source"],
        "id": r["id"],
        "rank": round(float(r["rank"]), 6),
        "content": r["content"],
        "headline": r["headline"],
        "path": r["path"],
        "start_line": r["start_line"],
        "end_line": r["end_line"],
        "memory_type": r["memory_type"],
    }


def _literal(text: str) -> str:
    """A SQL string literal for a catalog-derived name."""
    return "'" + text.replace("'", "''") + "'"
