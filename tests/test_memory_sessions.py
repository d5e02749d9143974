"""Sessions: hashed tokens, filters, extend and touch, inactivity and expiry boundaries, analytics."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest

from mahavishnu_assets.database.pool import Database
from mahavishnu_assets.errors import MemoryStoreError
from mahavishnu_assets.memory.store import MemoryStore
from mahavishnu_assets.settings import Settings


def store(db: Database, inactive: int = 3600) -> MemoryStore:
    settings = Settings()
    settings.memory.session_inactive_seconds = inactive
    return MemoryStore(db, settings)


async def test_token_is_returned_once_and_stored_hashed(db: Database) -> None:
    s = store(db)
    created = await s.session_create("alice", data={"role": "admin"}, ttl_seconds=600)
    token = created["token"]
    assert len(token) >= 40
    async with db.connection() as conn:
        row = await conn.fetchrow("SELECT * FROM mahavishnu.sessions WHERE id = $1::uuid", created["id"])
        dump = str(dict(row))
    assert token not in dump
    assert bytes(row["token_hash"]) == hashlib.sha256(token.encode()).digest()
    got = await s.session_get(created["id"])
    assert (
        got is not None
        and "token" not in got
        and got["owner"] == "alice"
        and got["data"] == {"role": "admin"}
    )
    by_token = await s.session_get_by_token(token)
    assert by_token is not None and by_token["id"] == created["id"]
    assert await s.session_get_by_token(token + "x") is None
    assert await s.session_get_by_token("") is None
    with pytest.raises(MemoryStoreError):
        await s.session_get("not-a-uuid")


async def test_list_filters(db: Database) -> None:
    s = store(db)
    a1 = await s.session_create("alice", data={"client": "cli"})
    await s.session_create("alice", data={"client": "web"})
    b1 = await s.session_create("bob", data={"client": "cli"})
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE mahavishnu.sessions SET expires_at = now() - interval '1 second' WHERE id = $1::uuid",
            b1["id"],
        )
    assert {x["owner"] for x in await s.session_list()} == {"alice", "bob"}
    assert len(await s.session_list(owner="alice")) == 2
    assert [x["id"] for x in await s.session_list(data_contains={"client": "cli"}, active=True)] == [a1["id"]]
    inactive = await s.session_list(active=False)
    assert [x["id"] for x in inactive] == [b1["id"]] and inactive[0]["active"] is False
    assert len(await s.session_list(limit=1)) == 1
    async with db.connection() as conn:
        now = await conn.fetchval("SELECT now()")
    assert await s.session_list(created_after=now + timedelta(hours=1)) == []
    assert len(await s.session_list(created_before=now + timedelta(hours=1))) == 3


async def test_extend_touch_and_update(db: Database) -> None:
    s = store(db)
    created = await s.session_create("carol", ttl_seconds=60)
    extended = await s.session_extend(created["id"], 3600)
    assert extended is not None and extended["expires_at"] > created["expires_at"]
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE mahavishnu.sessions SET last_active_at = now() - interval '10 minutes' WHERE id = $1::uuid",
            created["id"],
        )
    assert await s.session_touch(created["id"]) is True
    async with db.connection() as conn:
        idle = await conn.fetchval(
            "SELECT now() - last_active_at FROM mahavishnu.sessions WHERE id = $1::uuid", created["id"]
        )
    assert idle < timedelta(seconds=5)
    updated = await s.session_update_data(created["id"], {"step": 2})
    assert updated is not None and updated["data"] == {"step": 2}
    updated = await s.session_update_data(created["id"], {"more": True})
    assert updated is not None and updated["data"] == {"step": 2, "more": True}
    # Expired sessions cannot be revived.
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE mahavishnu.sessions SET expires_at = now() WHERE id = $1::uuid", created["id"]
        )
    assert await s.session_extend(created["id"], 3600) is None
    assert await s.session_touch(created["id"]) is False
    assert await s.session_get_by_token(created["token"]) is None
    assert await s.session_get(created["id"]) is None
    assert (await s.session_get(created["id"], include_inactive=True))["active"] is False  # type: ignore[index]


async def test_inactive_sessions_are_not_found_by_token(db: Database) -> None:
    s = store(db, inactive=60)
    created = await s.session_create("dave")
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE mahavishnu.sessions SET last_active_at = now() - interval '61 seconds' WHERE id = $1::uuid",
            created["id"],
        )
    assert await s.session_get_by_token(created["token"]) is None
    assert await s.session_get_active_count() == 0


async def test_cleanup_removes_exactly_expired_and_inactive(db: Database) -> None:
    s = store(db, inactive=100)
    names = ["expired_before", "expired_at", "expires_after", "idle_before", "idle_at", "idle_after", "fresh"]
    ids = {n: (await s.session_create(n))["id"] for n in names}
    async with db.connection() as conn:
        t = await conn.fetchval("SELECT now()")
        us = timedelta(microseconds=1)
        edits = {
            "expired_before": ("expires_at", t - us),
            "expired_at": ("expires_at", t),
            "expires_after": ("expires_at", t + us),
            "idle_before": ("last_active_at", t - timedelta(seconds=100) - us),
            "idle_at": ("last_active_at", t - timedelta(seconds=100)),
            "idle_after": ("last_active_at", t - timedelta(seconds=100) + us),
        }
        for name, (column, value) in edits.items():
            await conn.execute(
                f"UPDATE mahavishnu.sessions SET {column} = $2 WHERE id = $1::uuid",  # noqa: S608
                ids[name],
                value,
            )
    assert await s.session_cleanup_inactive(now=t) == 4
    async with db.connection() as conn:
        left = sorted(r["owner"] for r in await conn.fetch("SELECT owner FROM mahavishnu.sessions"))
    assert left == ["expires_after", "fresh", "idle_after"]


async def test_bulk_delete_active_count_and_analytics(db: Database) -> None:
    s = store(db)
    for owner in ("erin", "erin", "erin", "frank"):
        await s.session_create(owner)
    gone = await s.session_create("gina")
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE mahavishnu.sessions SET expires_at = now() - interval '1 hour' WHERE id = $1::uuid",
            gone["id"],
        )
    assert await s.session_get_active_count() == 4
    assert await s.session_get_active_count(owner="erin") == 3
    stats = await s.session_analytics()
    assert (stats["total"], stats["active"], stats["expired"], stats["owners"]) == (5, 4, 1, 3)
    assert stats["top_owners"][0] == {"owner": "erin", "sessions": 3, "active": 3}
    assert stats["created_last_24h"] == 5
    with pytest.raises(MemoryStoreError):
        await s.session_bulk_delete()
    assert await s.session_bulk_delete(owner="erin") == 3
    frank = (await s.session_list(owner="frank"))[0]
    assert await s.session_bulk_delete([frank["id"], gone["id"]]) == 2
    assert await s.session_get_active_count() == 0
    assert await s.session_delete(frank["id"]) is False
