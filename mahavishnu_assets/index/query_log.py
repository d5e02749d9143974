"""The bounded log of the queries users ran (table mahavishnu.query_log): written after each vector or hybrid
search, read by the ANN tuner so recall is measured on the queries the index actually serves.

Only the text is kept; the tuner embeds it again through the space's embedder (see migration 0043).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import asyncpg

from mahavishnu_assets.errors import MahavishnuError

if TYPE_CHECKING:
    from mahavishnu_assets.database.pool import Database
    from mahavishnu_assets.settings import Settings

logger = logging.getLogger(__name__)

LOGGED_MODES = frozenset({"vector", "hybrid"})
MAX_LOGGED_CHARS = 1000

# One round trip: add the query, then drop the space's rows past the newest `keep` (the statement's snapshot
# does not see the new row, so the cut is at the keep-th newest of the rows before it).
_ADD_AND_PRUNE = """
WITH added AS (
    INSERT INTO mahavishnu.query_log (space_id, mode, query) VALUES ($1, $2, $3) RETURNING id
)
DELETE FROM mahavishnu.query_log q
 WHERE q.space_id = $1
   AND q.id <= (SELECT id FROM mahavishnu.query_log WHERE space_id = $1 ORDER BY id DESC OFFSET $4 LIMIT 1)
"""


async def record_query(db: Database, settings: Settings, space_id: int | None, mode: str, query: str) -> bool:
    """Log one search's query text; whether it was logged. Never raises for a database problem: a search
    must not fail because its query could not be remembered."""
    keep = settings.index.query_log_size
    if not settings.index.query_log or keep <= 0 or space_id is None or mode not in LOGGED_MODES:
        return False
    text = " ".join(query.split())[:MAX_LOGGED_CHARS]
    if not text:
        return False
    try:
        async with db.connection() as conn:
            await conn.execute(_ADD_AND_PRUNE, int(space_id), mode, text, keep - 1)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError, MahavishnuError) as exc:
        logger.warning("The query was not logged for ANN tuning: %s", exc.__class__.__name__)
        return False
    return True


async def logged_queries(conn: asyncpg.Connection, space_id: int, limit: int) -> list[str]:
    """Distinct logged query texts of the space, most recently run first."""
    rows = await conn.fetch(
        """SELECT query FROM mahavishnu.query_log WHERE space_id = $1
            GROUP BY query ORDER BY max(id) DESC LIMIT $2""",
        int(space_id),
        int(limit),
    )
    return [r["query"] for r in rows]


async def prune_query_log(conn: asyncpg.Connection, keep: int) -> int:
    """Keep only the newest `keep` queries of every space (after the setting shrank); rows removed."""
    status = await conn.execute(
        """DELETE FROM mahavishnu.query_log q USING (
               SELECT id, row_number() OVER (PARTITION BY space_id ORDER BY id DESC) AS newer
                 FROM mahavishnu.query_log) r
            WHERE q.id = r.id AND r.newer > $1""",
        max(0, int(keep)),
    )
    return int(status.split()[-1])
