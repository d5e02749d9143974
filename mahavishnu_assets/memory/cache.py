"""A key-value cache in PostgreSQL: JSON values, TTLs, tags (GIN-indexed), hit counts.

An entry is expired when `expires_at <= now()` (the transaction's clock): from that instant it is never
returned, and maintenance removes exactly the expired entries.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

from mahavishnu_assets.errors import MemoryStoreError
from mahavishnu_assets.memory.base import (
    MAX_KEY_CHARS,
    StoreBase,
    check_json,
    check_seconds,
    check_tags,
    check_text,
)


def _key(value: Any) -> str:
    return check_text(value, "cache key", max_chars=MAX_KEY_CHARS)


class CacheMixin(StoreBase):
    """cache_get / cache_set and friends. Hits and misses of this process feed `cache_info`'s hit rate."""

    _cache_hits = 0
    _cache_misses = 0

    def _ttl(self, ttl_seconds: float | None) -> float | None:
        ttl = check_seconds(ttl_seconds, "ttl_seconds")
        if ttl is None:
            default = self.settings.memory.cache_default_ttl_seconds
            return float(default) if default else None
        return ttl

    def _count(self, hits: int, misses: int) -> None:
        self._cache_hits += hits
        self._cache_misses += misses

    async def cache_get(self, key: str) -> Any | None:
        """The value, or None when missing or expired; a hit is counted on the entry."""
        found = await self.cache_get_many([key])
        return found.get(key)

    async def cache_get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        """The live entries among `keys` as {key: value}; missing and expired keys are left out."""
        wanted = list(dict.fromkeys(_key(k) for k in keys))
        if not wanted:
            return {}
        async with self.db.connection() as conn:
            rows = await conn.fetch(
                """UPDATE mahavishnu.cache_entries
                       SET hit_count = hit_count + 1, last_accessed_at = now()
                     WHERE key = ANY($1::text[]) AND (expires_at IS NULL OR expires_at > now())
                 RETURNING key, value""",
                wanted,
            )
        found = {r["key"]: r["value"] for r in rows}
        self._count(len(found), len(wanted) - len(found))
        return found

    async def cache_set(
        self, key: str, value: Any, *, ttl_seconds: float | None = None, tags: Sequence[str] | None = None
    ) -> None:
        """Insert or replace an entry; `ttl_seconds` None means the default TTL (none unless configured)."""
        await self.cache_set_many({key: value}, ttl_seconds=ttl_seconds, tags=tags)

    async def cache_set_many(
        self,
        items: Mapping[str, Any],
        *,
        ttl_seconds: float | None = None,
        tags: Sequence[str] | None = None,
    ) -> int:
        """Insert or replace many entries in one statement, all with the same TTL and tags."""
        if not isinstance(items, Mapping):
            raise MemoryStoreError("items must be a dict of key -> value")
        keys = [_key(k) for k in items]
        values = [check_json(v, f"value of {k!r}") for k, v in items.items()]
        if not keys:
            return 0
        ttl = self._ttl(ttl_seconds)
        clean_tags = check_tags(tags)
        async with self.db.connection() as conn:
            status = await conn.execute(
                """INSERT INTO mahavishnu.cache_entries AS c (key, value, tags, expires_at)
                    SELECT k, v::jsonb, $3::text[], CASE WHEN $4::float8 IS NULL THEN NULL
                                                  ELSE now() + make_interval(secs => $4::float8) END
                      FROM unnest($1::text[], $2::text[]) AS t(k, v)
                    ON CONFLICT (key) DO UPDATE
                       SET value = EXCLUDED.value, tags = EXCLUDED.tags, expires_at = EXCLUDED.expires_at,
                           created_at = now(), last_accessed_at = now(), hit_count = 0""",
                keys,
                # As JSON text: a list value inside a jsonb[] parameter would read as another array dimension.
                [json.dumps(v, allow_nan=False) for v in values],
                clean_tags,
                ttl,
            )
        return int(status.split()[-1])

    async def cache_get_by_tags(
        self, tags: Sequence[str], *, match: Literal["any", "all"] = "any", limit: int = 1000
    ) -> dict[str, Any]:
        """Live entries carrying any (or all) of the tags, as {key: value}, through the GIN index."""
        clean = check_tags(tags)
        if not clean:
            return {}
        if match not in ("any", "all"):
            raise MemoryStoreError(f"match must be 'any' or 'all', got {match!r}")
        operator = "&&" if match == "any" else "@>"
        async with self.db.connection() as conn:
            rows = await conn.fetch(
                f"""SELECT key, value FROM mahavishnu.cache_entries
                     WHERE tags {operator} $1::text[] AND (expires_at IS NULL OR expires_at > now())
                     ORDER BY key LIMIT $2""",  # noqa: S608 - the operator is one of two literals
                clean,
                limit,
            )
        return {r["key"]: r["value"] for r in rows}

    async def cache_touch(self, key: str, *, ttl_seconds: float | None = None) -> bool:
        """Mark a live entry used now and, with `ttl_seconds`, make it expire that long from now."""
        ttl = check_seconds(ttl_seconds, "ttl_seconds")
        async with self.db.connection() as conn:
            status = await conn.execute(
                """UPDATE mahavishnu.cache_entries
                       SET last_accessed_at = now(),
                           expires_at = CASE WHEN $2::float8 IS NULL THEN expires_at
                                             ELSE now() + make_interval(secs => $2::float8) END
                     WHERE key = $1 AND (expires_at IS NULL OR expires_at > now())""",
                _key(key),
                ttl,
            )
        return status.endswith(" 1")

    async def cache_delete(self, keys: str | Sequence[str]) -> int:
        """Delete one key or several; returns how many entries existed."""
        wanted = [_key(keys)] if isinstance(keys, str) else [_key(k) for k in keys]
        async with self.db.connection() as conn:
            status = await conn.execute(
                "DELETE FROM mahavishnu.cache_entries WHERE key = ANY($1::text[])", wanted
            )
        return int(status.split()[-1])

    async def cache_delete_by_tags(self, tags: Sequence[str]) -> int:
        """Invalidate every entry carrying any of the tags."""
        clean = check_tags(tags)
        if not clean:
            return 0
        async with self.db.connection() as conn:
            status = await conn.execute(
                "DELETE FROM mahavishnu.cache_entries WHERE tags && $1::text[]", clean
            )
        return int(status.split()[-1])

    async def cache_cleanup_expired(self, *, now: datetime | None = None) -> int:
        """Delete exactly the entries with expires_at <= now (default: the database clock)."""
        async with self.db.connection() as conn:
            status = await conn.execute(
                "DELETE FROM mahavishnu.cache_entries WHERE expires_at <= coalesce($1::timestamptz, now())",
                now,
            )
        return int(status.split()[-1])

    async def cache_info(self) -> dict[str, Any]:
        """Entries (live and expired), hits, this process's hit rate, and the space the cache takes."""
        async with self.db.connection() as conn:
            row = await conn.fetchrow(
                """SELECT count(*) AS entries,
                           count(*) FILTER (WHERE NOT (expires_at IS NULL OR expires_at > now())) AS expired,
                           coalesce(sum(hit_count), 0) AS total_hits,
                           coalesce(sum(pg_column_size(value)), 0) AS value_bytes,
                           (SELECT count(DISTINCT t) FROM mahavishnu.cache_entries, unnest(tags) t) AS tags,
                           pg_total_relation_size('mahavishnu.cache_entries') AS size_bytes
                      FROM mahavishnu.cache_entries"""
            )
        assert row is not None
        lookups = self._cache_hits + self._cache_misses
        return {
            "entries": int(row["entries"]),
            "live": int(row["entries"]) - int(row["expired"]),
            "expired": int(row["expired"]),
            "distinct_tags": int(row["tags"]),
            "total_hits": int(row["total_hits"]),
            "hits": self._cache_hits,
            "misses": self._cache_misses,
            "hit_rate": round(self._cache_hits / lookups, 4) if lookups else None,
            "value_bytes": int(row["value_bytes"]),
            "size_bytes": int(row["size_bytes"]),
        }
