"""The cache: TTLs, tags (quotes, unicode) through the GIN index, hits, expiry boundaries, info."""

from __future__ import annotations

from datetime import timedelta

import pytest

from mahavishnu_assets.database.pool import Database
from mahavishnu_assets.errors import MemoryStoreError
from mahavishnu_assets.memory.store import MemoryStore
from mahavishnu_assets.settings import Settings

AWKWARD_TAGS = ['"quoted"', "it's", "{brace}", "comma,tag", "ünïcödé", "🙂 emoji", "back\\slash", "NULL", " "]


def store(db: Database) -> MemoryStore:
    return MemoryStore(db, Settings())


async def test_set_get_replace_delete(db: Database) -> None:
    s = store(db)
    value = {"list": [1, 2.5, "three"], "nested": {"ok": True}, "text": "ünï 🙂 'q' \"dq\""}
    await s.cache_set("k1", value)
    assert await s.cache_get("k1") == value
    await s.cache_set("k1", [1, 2])
    assert await s.cache_get("k1") == [1, 2]
    await s.cache_set("k2", None)  # JSON null is a value; a missing key is not
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT value FROM mahavishnu.cache_entries WHERE key = 'k2'") is None
    assert await s.cache_get("missing") is None
    assert await s.cache_delete("k1") == 1
    assert await s.cache_delete(["k1", "k2"]) == 1
    assert await s.cache_get("k1") is None


async def test_bad_values_and_keys_are_refused(db: Database) -> None:
    s = store(db)
    with pytest.raises(MemoryStoreError):
        await s.cache_set("k", {1, 2})
    with pytest.raises(MemoryStoreError):
        await s.cache_set("k", float("inf"))
    with pytest.raises(MemoryStoreError):
        await s.cache_set("", 1)
    with pytest.raises(MemoryStoreError):
        await s.cache_set("k", 1, ttl_seconds=0)
    with pytest.raises(MemoryStoreError):
        await s.cache_set("k", 1, tags="one-string")
    with pytest.raises(MemoryStoreError):
        await s.cache_set("k", "nul\x00")


async def test_ttl_expiry_hides_entries(db: Database) -> None:
    s = store(db)
    await s.cache_set("short", 1, ttl_seconds=3600)
    await s.cache_set("forever", 2)
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE mahavishnu.cache_entries SET expires_at = now() - interval '1 microsecond' WHERE key = 'short'"
        )
    assert await s.cache_get("short") is None
    assert await s.cache_get_many(["short", "forever"]) == {"forever": 2}
    assert await s.cache_touch("short") is False
    info = await s.cache_info()
    assert (info["entries"], info["expired"], info["live"]) == (2, 1, 1)


async def test_expiry_boundary_removes_exactly_the_expired(db: Database) -> None:
    s = store(db)
    await s.cache_set_many({"before": 1, "at": 2, "after": 3, "never": 4})
    async with db.connection() as conn:
        t = await conn.fetchval("SELECT now()")
        for key, delta in (("before", -1), ("at", 0), ("after", 1)):
            await conn.execute(
                "UPDATE mahavishnu.cache_entries SET expires_at = $2 WHERE key = $1",
                key,
                t + timedelta(microseconds=delta),
            )
    assert await s.cache_cleanup_expired(now=t) == 2
    async with db.connection() as conn:
        left = [r["key"] for r in await conn.fetch("SELECT key FROM mahavishnu.cache_entries ORDER BY key")]
    assert left == ["after", "never"]


async def test_tags_with_quotes_and_unicode(db: Database) -> None:
    s = store(db)
    for i, tag in enumerate(AWKWARD_TAGS):
        await s.cache_set(f"k{i}", i, tags=[tag, "all"])
    await s.cache_set("two", "x", tags=[AWKWARD_TAGS[0], AWKWARD_TAGS[1]])
    for i, tag in enumerate(AWKWARD_TAGS):
        found = await s.cache_get_by_tags([tag])
        expected = {f"k{i}": i}
        if i in (0, 1):
            expected["two"] = "x"
        assert found == expected, tag
    assert await s.cache_get_by_tags([AWKWARD_TAGS[0], AWKWARD_TAGS[1]], match="all") == {"two": "x"}
    assert len(await s.cache_get_by_tags(["all"])) == len(AWKWARD_TAGS)
    assert await s.cache_get_by_tags(["no such tag"]) == {}
    assert await s.cache_delete_by_tags(["all"]) == len(AWKWARD_TAGS)
    assert await s.cache_info() | {} and (await s.cache_info())["entries"] == 1


async def test_tag_lookup_uses_the_gin_index(db: Database) -> None:
    async with db.connection() as conn:
        await conn.execute(
            "INSERT INTO mahavishnu.cache_entries (key, value, tags) "
            "SELECT 'k' || g, '1', ARRAY['t' || (g % 500)] FROM generate_series(1, 20000) g"
        )
        await conn.execute("ANALYZE mahavishnu.cache_entries")
        plan = "\n".join(
            r[0]
            for r in await conn.fetch(
                "EXPLAIN SELECT key, value FROM mahavishnu.cache_entries WHERE tags && $1::text[] "
                "AND (expires_at IS NULL OR expires_at > now())",
                ["t7"],
            )
        )
    assert "cache_entries_tags_idx" in plan


async def test_many_touch_and_hit_counts(db: Database) -> None:
    s = store(db)
    assert await s.cache_set_many({"a": 1, "b": 2, "c": 3}, ttl_seconds=60, tags=["batch"]) == 3
    assert await s.cache_get_many(["a", "b", "zzz"]) == {"a": 1, "b": 2}
    await s.cache_get("a")
    async with db.connection() as conn:
        hits = dict(await conn.fetch("SELECT key, hit_count FROM mahavishnu.cache_entries ORDER BY key"))
        before = await conn.fetchval("SELECT expires_at FROM mahavishnu.cache_entries WHERE key = 'c'")
    assert hits == {"a": 2, "b": 1, "c": 0}
    assert await s.cache_touch("c", ttl_seconds=7200) is True
    assert await s.cache_touch("nope") is False
    async with db.connection() as conn:
        after = await conn.fetchval("SELECT expires_at FROM mahavishnu.cache_entries WHERE key = 'c'")
    assert after - before > timedelta(minutes=100)
    info = await s.cache_info()
    assert info["hits"] == 3 and info["misses"] == 1
    assert info["hit_rate"] == 0.75
    assert info["total_hits"] == 3
    assert info["distinct_tags"] == 1
    assert info["size_bytes"] > 0 and info["value_bytes"] > 0


async def test_default_ttl_from_settings(db: Database) -> None:
    settings = Settings()
    settings.memory.cache_default_ttl_seconds = 120
    s = MemoryStore(db, settings)
    await s.cache_set("k", 1)
    async with db.connection() as conn:
        left = await conn.fetchval(
            "SELECT extract(epoch FROM expires_at - now()) FROM mahavishnu.cache_entries WHERE key = 'k'"
        )
    assert 100 < left <= 120
