"""Memory snapshots: consistent point-in-time copies of the memory and the corpus that share unchanged rows.

Each snapshotted table (repositories, embedding_spaces, source_files, chunks, embeddings, memories) has a
version table `snap_<table>` keyed like it. A version row says: "the row with this key, as written by the
transaction `row_xmin`, belongs to every snapshot id in [first_snapshot, until_snapshot)". Its `data` column is
NULL while the live row is still that version, so the snapshot points at the live row instead of copying it.

`capture` takes, deletes and expires snapshots, `restore` puts one back, `search` reads inside one; `tables`
holds what they share. SnapshotManager is the one entry: it opens the connection and takes the advisory lock
that serialises snapshot operations. Cache entries, sessions and metrics are not part of a snapshot: they are
short-lived, and restoring a session would bring back tokens that were revoked.
"""

# The only identifier interpolated into SQL here is SCHEMA; every value is a bind parameter.
# ruff: noqa: S608

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from mahavishnu_assets.database.pool import Database
from mahavishnu_assets.errors import NotFoundError, SnapshotError
from mahavishnu_assets.memory.snapshots.capture import (
    delete_snapshots,
    expired_snapshots,
    storage_stats,
    take_snapshot,
)
from mahavishnu_assets.memory.snapshots.restore import restore_snapshot
from mahavishnu_assets.memory.snapshots.search import search_snapshot, searched_tables
from mahavishnu_assets.memory.snapshots.tables import (
    OPS_LOCK,
    SCHEMA,
    TABLE_NAMES,
    TABLES,
    Progress,
    SnapshotTable,
    advisory_lock,
    ident,
    report,
    snapshot_dict,
)
from mahavishnu_assets.settings import Settings

__all__ = ["SCHEMA", "TABLE_NAMES", "TABLES", "Progress", "SnapshotManager", "SnapshotTable", "ident"]


class SnapshotManager:
    """Create, list, restore, search and expire memory snapshots (see the package docstring)."""

    def __init__(self, db: Database, settings: Settings | None = None) -> None:
        from mahavishnu_assets.settings import load_settings

        self.db = db
        self.settings = settings or load_settings()

    @property
    def _lock_timeout_ms(self) -> int:
        return int(self.settings.memory.snapshot_lock_timeout_seconds * 1000)

    async def create(self, name: str | None = None, *, partition_key: str | None = None) -> dict[str, Any]:
        """Take a consistent snapshot of the memory and the corpus in one REPEATABLE READ transaction."""
        async with (
            self.db.connection() as conn,
            advisory_lock(conn, OPS_LOCK, "take a snapshot", self._lock_timeout_ms),
        ):
            return await take_snapshot(conn, name, partition_key, lock_timeout_ms=self._lock_timeout_ms)

    async def get(self, snapshot_id: int) -> dict[str, Any]:
        async with self.db.connection() as conn:
            row = await conn.fetchrow(f"SELECT * FROM {SCHEMA}.memory_snapshots WHERE id = $1", snapshot_id)
        if row is None:
            raise NotFoundError(f"Snapshot {snapshot_id} does not exist")
        return snapshot_dict(row)

    async def list_all(self, *, limit: int | None = None, name: str | None = None) -> list[dict[str, Any]]:
        async with self.db.connection() as conn:
            rows = await conn.fetch(
                f"""SELECT * FROM {SCHEMA}.memory_snapshots
                     WHERE $2::text IS NULL OR name = $2
                     ORDER BY created_at DESC, id DESC LIMIT $1""",
                limit,
                name,
            )
        return [snapshot_dict(r) for r in rows]

    async def delete(self, snapshot_id: int) -> dict[str, Any]:
        async with (
            self.db.connection() as conn,
            advisory_lock(conn, OPS_LOCK, "delete a snapshot", self._lock_timeout_ms),
            conn.transaction(),
        ):
            deleted = await delete_snapshots(conn, [snapshot_id])
        if not deleted:
            raise NotFoundError(f"Snapshot {snapshot_id} does not exist")
        return deleted[0]

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
        async with (
            self.db.connection() as conn,
            advisory_lock(conn, OPS_LOCK, "apply snapshot retention", self._lock_timeout_ms),
            conn.transaction(),
        ):
            cutoff = (now or await conn.fetchval("SELECT now()")) - timedelta(days=max_age_days)
            return await delete_snapshots(conn, await expired_snapshots(conn, keep, cutoff))

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
        timeout_ms = self._lock_timeout_ms
        async with (
            self.db.connection() as conn,
            advisory_lock(conn, OPS_LOCK, "restore a snapshot", timeout_ms),
        ):
            if not await conn.fetchval(f"SELECT 1 FROM {SCHEMA}.memory_snapshots WHERE id = $1", snapshot_id):
                raise NotFoundError(f"Snapshot {snapshot_id} does not exist")
            safety = None
            if safety_snapshot:
                safety = await take_snapshot(
                    conn, f"before-restore-of-{snapshot_id}", None, lock_timeout_ms=timeout_ms
                )
                await report(progress, "safety_snapshot")
            counts = await restore_snapshot(conn, snapshot_id, progress, lock_timeout_ms=timeout_ms)
        return {
            "snapshot": await self.get(snapshot_id),
            "restored": counts,
            "safety_snapshot": safety,
            "seconds": round(time.perf_counter() - started, 4),
        }

    async def search(
        self,
        query: str,
        *,
        snapshot_id: int | None = None,
        k: int = 20,
        tables: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Full-text search over the chunks and memories as they were in a snapshot (default: the newest)."""
        wanted = searched_tables(query, tables)
        async with self.db.connection() as conn:
            return await search_snapshot(
                conn,
                query,
                wanted,
                snapshot_id=snapshot_id,
                k=k,
                default_config=self.settings.memory.snapshot_search_config,
            )

    async def stats(self) -> dict[str, Any]:
        """How many snapshots, how many row versions back them, and how much sharing saves."""
        async with self.db.connection() as conn:
            return await storage_stats(conn)
