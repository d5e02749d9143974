"""Maintenance on real PostgreSQL: exactly the expired and inactive rows go, retention, VACUUM figures, index
rebuilds through the index domain."""

from __future__ import annotations

from datetime import timedelta

import pytest

from mahavishnu_assets.database.pool import Database
from mahavishnu_assets.memory import maintenance
from mahavishnu_assets.memory.snapshots import SnapshotManager
from mahavishnu_assets.memory.store import MemoryStore
from mahavishnu_assets.settings import Settings


def settings(**memory: object) -> Settings:
    s = Settings()
    for key, value in memory.items():
        setattr(s.memory, key, value)
    return s


async def test_removes_exactly_the_expired_and_inactive(db: Database) -> None:
    cfg = settings(session_inactive_seconds=60, snapshot_retention_count=2, snapshot_retention_days=30)
    store = MemoryStore(db, cfg)
    await store.cache_set_many({"before": 1, "at": 2, "after": 3, "never": 4})
    sessions = {name: (await store.session_create(name))["id"] for name in ("old", "edge", "young", "live")}
    async with db.connection() as conn:
        t = await conn.fetchval("SELECT now()") + timedelta(seconds=5)
        us = timedelta(microseconds=1)
        for key, at in (("before", t - us), ("at", t), ("after", t + us)):
            await conn.execute("UPDATE mahavishnu.cache_entries SET expires_at = $2 WHERE key = $1", key, at)
        for name, active in (
            ("old", t - timedelta(seconds=60) - us),
            ("edge", t - timedelta(seconds=60)),
            ("young", t - timedelta(seconds=60) + us),
        ):
            await conn.execute(
                "UPDATE mahavishnu.sessions SET last_active_at = $2 WHERE id = $1::uuid",
                sessions[name],
                active,
            )
    manager = SnapshotManager(db, cfg)
    snaps = [(await manager.create(f"s{i}"))["id"] for i in range(3)]
    report = await maintenance.run_maintenance(db, cfg, vacuum=False, rebuild_indexes=False, now=t)
    assert report["cache_entries_removed"] == 2
    assert report["sessions_removed"] == 2
    assert report["snapshot_ids_removed"] == [snaps[0]]
    async with db.connection() as conn:
        keys = [r["key"] for r in await conn.fetch("SELECT key FROM mahavishnu.cache_entries ORDER BY key")]
        owners = [
            r["owner"] for r in await conn.fetch("SELECT owner FROM mahavishnu.sessions ORDER BY owner")
        ]
        recorded = await conn.fetchval(
            "SELECT value FROM mahavishnu.performance_metrics WHERE metric = 'maintenance.cache_entries_removed'"
        )
    assert keys == ["after", "never"]
    assert owners == ["live", "young"]
    assert recorded == 2


async def test_vacuum_reports_and_reclaims_dead_tuples(db: Database) -> None:
    cfg = settings()
    async with db.connection() as conn:
        await conn.execute(
            "INSERT INTO mahavishnu.cache_entries (key, value, expires_at) "
            "SELECT 'k' || g, to_jsonb(repeat('x', 200)), now() - interval '1 hour' FROM generate_series(1, 3000) g"
        )
        await conn.execute("INSERT INTO mahavishnu.cache_entries (key, value) VALUES ('stay', '1')")
    report = await maintenance.run_maintenance(db, cfg, rebuild_indexes=False)
    assert report["cache_entries_removed"] == 3000
    assert report["dead_tuples_before"] >= 3000
    assert report["bloat_bytes_estimate"] > 0
    cache = next(t for t in report["tables"] if t["table"] == "cache_entries")
    assert cache["dead_tuples"] == 0 and cache["live_tuples"] == 1 and cache["last_vacuum"] is not None
    vacuumed = {v["table"] for v in report["vacuum"]}
    assert {"cache_entries", "sessions", "chunks", "embeddings", "memories"} <= vacuumed
    assert report["tables_vacuumed"] == len(report["vacuum"])


async def test_index_rebuilds_go_through_the_index_domain(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = settings()
    real = await maintenance.rebuild_ann_indexes(
        db, cfg
    )  # the index domain's own function, on an empty corpus
    assert isinstance(real, list)
    import mahavishnu_assets.index.maintenance as index_maintenance

    calls = []

    async def fake(db_: Database, settings_: Settings) -> list[dict]:
        calls.append((db_, settings_))
        return [{"action": "rebuilt", "space_id": 1}, {"action": "checked", "space_id": 2}]

    monkeypatch.setattr(index_maintenance, "rebuild_drifted_indexes", fake)
    report = await maintenance.run_maintenance(db, cfg, vacuum=False)
    assert calls == [(db, cfg)]
    assert report["indexes_rebuilt"] == 1 and len(report["index_actions"]) == 2
    report = await maintenance.run_maintenance(db, cfg, vacuum=False, rebuild_indexes=False)
    assert len(calls) == 1 and report["indexes_rebuilt"] == 0


async def test_expired_backlog_for_the_sensor(db: Database) -> None:
    cfg = settings(session_inactive_seconds=60)
    store = MemoryStore(db, cfg)
    await store.cache_set_many({"a": 1, "b": 2})
    created = await store.session_create("idle")
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE mahavishnu.cache_entries SET expires_at = timestamptz '2026-01-02' WHERE key = 'a'"
        )
        await conn.execute(
            "UPDATE mahavishnu.sessions SET last_active_at = timestamptz '2026-01-01' WHERE id = $1::uuid",
            created["id"],
        )
    backlog = await maintenance.expired_backlog(db, cfg)
    assert backlog == {
        "expired_cache_entries": 1,
        "removable_sessions": 1,
        "total": 2,
        "oldest": "2026-01-01T00:00:00+00:00",
    }
