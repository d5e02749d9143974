"""Sessions: opaque tokens stored only as SHA-256 hashes, expiry, inactivity, analytics.

A session is expired when `expires_at <= now()` and inactive when `last_active_at <= now() - inactive`
(`memory.session_inactive_seconds`); it is active when neither. Only active sessions are found by token,
touched or extended; cleanup removes exactly the expired and the inactive ones.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from mahavishnu_assets.errors import MemoryStoreError
from mahavishnu_assets.memory.base import StoreBase, check_json, check_seconds, check_text

TOKEN_BYTES = 32


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def _session_dict(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "owner": row["owner"],
        "data": row["data"],
        "created_at": row["created_at"].isoformat(),
        "last_active_at": row["last_active_at"].isoformat(),
        "expires_at": row["expires_at"].isoformat(),
        "active": bool(row["active"]),
    }


def _uuid(value: Any) -> uuid.UUID:
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except ValueError:
        raise MemoryStoreError(f"{value!r} is not a session id (a UUID)") from None


class SessionsMixin(StoreBase):
    """session_create / session_get / session_list and the rest of the session API."""

    def _inactive(self, inactive_seconds: float | None = None) -> float:
        value = check_seconds(inactive_seconds, "inactive_seconds")
        return value if value is not None else float(self.settings.memory.session_inactive_seconds)

    async def session_create(
        self, owner: str, *, data: dict[str, Any] | None = None, ttl_seconds: float | None = None
    ) -> dict[str, Any]:
        """Create a session; the returned `token` is shown this once and stored only as its hash."""
        check_text(owner, "owner", max_chars=1000)
        if data is not None and not isinstance(data, dict):
            raise MemoryStoreError("session data must be a dict")
        check_json(data or {}, "session data")
        ttl = check_seconds(ttl_seconds, "ttl_seconds") or float(self.settings.memory.session_ttl_seconds)
        token = secrets.token_urlsafe(TOKEN_BYTES)
        async with self.db.connection() as conn:
            row = await conn.fetchrow(
                """INSERT INTO mahavishnu.sessions (id, token_hash, owner, data, expires_at)
                    VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5::float8))
                    RETURNING id, owner, data, created_at, last_active_at, expires_at, true AS active""",
                uuid.uuid4(),
                hash_token(token),
                owner,
                data or {},
                ttl,
            )
        assert row is not None
        return {**_session_dict(row), "token": token}

    async def session_get(
        self, session_id: str | uuid.UUID, *, include_inactive: bool = False
    ) -> dict[str, Any] | None:
        async with self.db.connection() as conn:
            row = await conn.fetchrow(
                """SELECT id, owner, data, created_at, last_active_at, expires_at, (expires_at > now() AND last_active_at > now() - make_interval(secs => $2::float8)) AS active FROM mahavishnu.sessions
                     WHERE id = $1""",
                _uuid(session_id),
                self._inactive(),
            )
        if row is None or (not row["active"] and not include_inactive):
            return None
        return _session_dict(row)

    async def session_get_by_token(self, token: str, *, touch: bool = True) -> dict[str, Any] | None:
        """The active session holding this token (touched unless `touch=False`), else None."""
        if not isinstance(token, str) or not token:
            return None
        async with self.db.connection() as conn:
            if touch:
                row = await conn.fetchrow(
                    """UPDATE mahavishnu.sessions SET last_active_at = now()
                         WHERE token_hash = $1 AND (expires_at > now() AND last_active_at > now() - make_interval(secs => $2::float8))
                     RETURNING id, owner, data, created_at, last_active_at, expires_at, true AS active""",
                    hash_token(token),
                    self._inactive(),
                )
            else:
                row = await conn.fetchrow(
                    """SELECT id, owner, data, created_at, last_active_at, expires_at, true AS active FROM mahavishnu.sessions
                         WHERE token_hash = $1 AND (expires_at > now() AND last_active_at > now() - make_interval(secs => $2::float8))""",
                    hash_token(token),
                    self._inactive(),
                )
        return _session_dict(row) if row else None

    async def session_list(
        self,
        *,
        owner: str | None = None,
        active: bool | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        data_contains: dict[str, Any] | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Sessions matching every filter given, newest first."""
        if data_contains is not None:
            check_json(data_contains, "data_contains")
        async with self.db.connection() as conn:
            rows = await conn.fetch(
                """SELECT * FROM (
                        SELECT id, owner, data, created_at, last_active_at, expires_at, (expires_at > now() AND last_active_at > now() - make_interval(secs => $1::float8)) AS active FROM mahavishnu.sessions
                         WHERE ($2::text IS NULL OR owner = $2)
                           AND ($3::timestamptz IS NULL OR created_at >= $3)
                           AND ($4::timestamptz IS NULL OR created_at < $4)
                           AND ($5::jsonb IS NULL OR data @> $5::jsonb)) s
                     WHERE $6::boolean IS NULL OR active = $6
                     ORDER BY created_at DESC, id LIMIT $7 OFFSET $8""",
                self._inactive(),
                owner,
                created_after,
                created_before,
                data_contains,
                active,
                limit,
                offset,
            )
        return [_session_dict(r) for r in rows]

    async def session_touch(self, session_id: str | uuid.UUID) -> bool:
        """Mark an active session used now; False when it is missing, expired or inactive."""
        async with self.db.connection() as conn:
            status = await conn.execute(
                "UPDATE mahavishnu.sessions SET last_active_at = now() WHERE id = $1 AND (expires_at > now() AND last_active_at > now() - make_interval(secs => $2::float8))",
                _uuid(session_id),
                self._inactive(),
            )
        return status.endswith(" 1")

    async def session_extend(self, session_id: str | uuid.UUID, seconds: float) -> dict[str, Any] | None:
        """Push an active session's expiry `seconds` further (and touch it); None when it is not active."""
        extra = check_seconds(seconds, "seconds")
        async with self.db.connection() as conn:
            row = await conn.fetchrow(
                """UPDATE mahavishnu.sessions
                       SET expires_at = expires_at + make_interval(secs => $3::float8), last_active_at = now()
                     WHERE id = $1 AND (expires_at > now() AND last_active_at > now() - make_interval(secs => $2::float8))
                 RETURNING id, owner, data, created_at, last_active_at, expires_at, true AS active""",
                _uuid(session_id),
                self._inactive(),
                extra,
            )
        return _session_dict(row) if row else None

    async def session_update_data(
        self, session_id: str | uuid.UUID, data: dict[str, Any], *, merge: bool = True
    ) -> dict[str, Any] | None:
        """Merge into (or replace) an active session's data."""
        if not isinstance(data, dict):
            raise MemoryStoreError("session data must be a dict")
        check_json(data, "session data")
        async with self.db.connection() as conn:
            row = await conn.fetchrow(
                """UPDATE mahavishnu.sessions
                       SET data = CASE WHEN $4 THEN data || $3::jsonb ELSE $3::jsonb END
                     WHERE id = $1 AND (expires_at > now() AND last_active_at > now() - make_interval(secs => $2::float8))
                 RETURNING id, owner, data, created_at, last_active_at, expires_at, true AS active""",
                _uuid(session_id),
                self._inactive(),
                data,
                merge,
            )
        return _session_dict(row) if row else None

    async def session_delete(self, session_id: str | uuid.UUID) -> bool:
        return await self.session_bulk_delete([session_id]) == 1

    async def session_bulk_delete(
        self, session_ids: Sequence[str | uuid.UUID] | None = None, *, owner: str | None = None
    ) -> int:
        """Delete the given sessions, or every session of `owner`; at least one selector is required."""
        if session_ids is None and owner is None:
            raise MemoryStoreError("Give session ids or an owner: refusing to delete every session")
        ids = [_uuid(s) for s in session_ids] if session_ids is not None else None
        async with self.db.connection() as conn:
            status = await conn.execute(
                """DELETE FROM mahavishnu.sessions
                     WHERE ($1::uuid[] IS NULL OR id = ANY($1::uuid[])) AND ($2::text IS NULL OR owner = $2)""",
                ids,
                owner,
            )
        return int(status.split()[-1])

    async def session_get_active_count(self, *, owner: str | None = None) -> int:
        async with self.db.connection() as conn:
            value = await conn.fetchval(
                """SELECT count(*) FROM mahavishnu.sessions
                     WHERE (expires_at > now() AND last_active_at > now() - make_interval(secs => $1::float8)) AND ($2::text IS NULL OR owner = $2)""",
                self._inactive(),
                owner,
            )
        return int(value)

    async def session_cleanup_inactive(
        self, *, inactive_seconds: float | None = None, now: datetime | None = None
    ) -> int:
        """Delete exactly the expired sessions and those idle for at least `inactive_seconds`."""
        async with self.db.connection() as conn:
            status = await conn.execute(
                """DELETE FROM mahavishnu.sessions
                     WHERE expires_at <= coalesce($2::timestamptz, now())
                        OR last_active_at <= coalesce($2::timestamptz, now()) - make_interval(secs => $1::float8)""",
                self._inactive(inactive_seconds),
                now,
            )
        return int(status.split()[-1])

    async def session_analytics(self, *, top_owners: int = 10) -> dict[str, Any]:
        """Counts by state, the busiest owners, and how long sessions last and idle."""
        inactive = self._inactive()
        async with self.db.connection() as conn:
            row = await conn.fetchrow(
                """SELECT count(*) AS total,
                           count(*) FILTER (WHERE (expires_at > now() AND last_active_at > now() - make_interval(secs => $1::float8))) AS active,
                           count(*) FILTER (WHERE expires_at <= now()) AS expired,
                           count(*) FILTER (WHERE expires_at > now()
                                              AND last_active_at <= now() - make_interval(secs => $1::float8))
                               AS inactive,
                           count(*) FILTER (WHERE created_at > now() - interval '24 hours') AS created_last_24h,
                           count(DISTINCT owner) AS owners,
                           extract(epoch FROM avg(last_active_at - created_at)) AS avg_used_seconds,
                           extract(epoch FROM percentile_cont(0.5) WITHIN GROUP
                                   (ORDER BY last_active_at - created_at)) AS median_used_seconds,
                           extract(epoch FROM avg(now() - last_active_at)
                                   FILTER (WHERE (expires_at > now() AND last_active_at > now() - make_interval(secs => $1::float8)))) AS avg_idle_seconds,
                           min(created_at) AS oldest_created_at
                      FROM mahavishnu.sessions""",
                inactive,
            )
            owners = await conn.fetch(
                """SELECT owner, count(*) AS sessions, count(*) FILTER (WHERE (expires_at > now() AND last_active_at > now() - make_interval(secs => $1::float8))) AS active
                      FROM mahavishnu.sessions GROUP BY owner ORDER BY sessions DESC, owner LIMIT $2""",
                inactive,
                top_owners,
            )

        assert row is not None

        def seconds(value: Any) -> float | None:
            return round(float(value), 3) if value is not None else None

        return {
            "total": int(row["total"]),
            "active": int(row["active"]),
            "expired": int(row["expired"]),
            "inactive": int(row["inactive"]),
            "created_last_24h": int(row["created_last_24h"]),
            "owners": int(row["owners"]),
            "avg_used_seconds": seconds(row["avg_used_seconds"]),
            "median_used_seconds": seconds(row["median_used_seconds"]),
            "avg_idle_seconds": seconds(row["avg_idle_seconds"]),
            "oldest_created_at": row["oldest_created_at"].isoformat() if row["oldest_created_at"] else None,
            "inactive_after_seconds": inactive,
            "top_owners": [dict(r) for r in owners],
        }
