"""MemoryStore: memories, cache, sessions and snapshots behind one object (plain async Python)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from mahavishnu_assets.memory.cache import CacheMixin
from mahavishnu_assets.memory.memories import MemoriesMixin
from mahavishnu_assets.memory.sessions import SessionsMixin
from mahavishnu_assets.memory.snapshots import Progress, SnapshotManager


class MemoryStore(MemoriesMixin, CacheMixin, SessionsMixin):
    """The operational memory: `store_memory`, `cache_*`, `session_*` and `memory_snapshot_*`.

    Every statement is parameterized; the few identifiers in SQL come from fixed lists or the catalog.
    """

    @property
    def snapshots(self) -> SnapshotManager:
        return SnapshotManager(self.db, self.settings)

    async def memory_snapshot_create(
        self, name: str | None = None, *, partition_key: str | None = None
    ) -> dict[str, Any]:
        return await self.snapshots.create(name, partition_key=partition_key)

    async def memory_snapshot_get(self, snapshot_id: int) -> dict[str, Any]:
        return await self.snapshots.get(snapshot_id)

    async def memory_snapshot_list(
        self, *, limit: int | None = None, name: str | None = None
    ) -> list[dict[str, Any]]:
        return await self.snapshots.list_all(limit=limit, name=name)

    async def memory_snapshot_delete(self, snapshot_id: int) -> dict[str, Any]:
        return await self.snapshots.delete(snapshot_id)

    async def memory_snapshot_cleanup(
        self, *, keep: int | None = None, max_age_days: int | None = None, now: datetime | None = None
    ) -> list[dict[str, Any]]:
        return await self.snapshots.cleanup(keep=keep, max_age_days=max_age_days, now=now)

    async def memory_snapshot_restore(
        self, snapshot_id: int, *, safety_snapshot: bool | None = None, progress: Progress | None = None
    ) -> dict[str, Any]:
        return await self.snapshots.restore(snapshot_id, safety_snapshot=safety_snapshot, progress=progress)

    async def memory_snapshot_search(
        self, query: str, *, snapshot_id: int | None = None, k: int = 20, tables: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        return await self.snapshots.search(query, snapshot_id=snapshot_id, k=k, tables=tables)

    async def memory_snapshot_stats(self) -> dict[str, Any]:
        return await self.snapshots.stats()
