"""Reading the embedding spaces and the ANN index facts kept for each (table mahavishnu.vector_indexes)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from mahavishnu_assets.index.plan import INDEX_PREFIX, SCHEMA, TABLE, parse_index_name


@dataclass(frozen=True)
class Space:
    id: int
    provider: str
    model: str
    dimensions: int
    rows: int
    # Part of the space's identity: vectors of other prefixes are never compared with these.
    document_prefix: str = ""
    query_prefix: str = ""

    def describe(self) -> str:
        return f"{self.provider}:{self.model}/{self.dimensions}"


_SPACES = """SELECT s.id, s.provider, s.model, s.dimensions, s.document_prefix, s.query_prefix,
                  (SELECT count(*) FROM mahavishnu.embeddings e WHERE e.space_id = s.id) AS rows
             FROM mahavishnu.embedding_spaces s"""


def _space(r: asyncpg.Record) -> Space:
    return Space(
        r["id"],
        r["provider"],
        r["model"],
        r["dimensions"],
        r["rows"],
        r["document_prefix"],
        r["query_prefix"],
    )


@dataclass(frozen=True)
class LiveIndex:
    """An `ann_*` index as the catalog sees it."""

    name: str
    space_id: int | None
    method: str | None
    valid: bool
    building: bool


async def spaces(conn: asyncpg.Connection) -> list[Space]:
    """Every embedding space with its number of stored vectors."""
    rows = await conn.fetch(f"""{_SPACES} ORDER BY s.id""")
    return [_space(r) for r in rows]


async def space(conn: asyncpg.Connection, space_id: int) -> Space | None:
    found = await spaces_by_id(conn, [space_id])
    return found[0] if found else None


async def spaces_by_id(conn: asyncpg.Connection, ids: list[int]) -> list[Space]:
    rows = await conn.fetch(
        f"""{_SPACES} WHERE s.id = ANY($1::int[]) ORDER BY s.id""",
        ids,
    )
    return [_space(r) for r in rows]


async def live_indexes(conn: asyncpg.Connection) -> list[LiveIndex]:
    """Every `ann_*` index on the embeddings table, with validity and whether a build is running on it."""
    rows = await conn.fetch(
        """SELECT c.relname AS name, i.indisvalid AND i.indisready AS valid,
                  EXISTS (SELECT 1 FROM pg_stat_progress_create_index p WHERE p.index_relid = c.oid) AS building
             FROM pg_index i
             JOIN pg_class c ON c.oid = i.indexrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = $1 AND c.relname LIKE $2 AND i.indrelid = to_regclass($3)
            ORDER BY c.relname""",
        SCHEMA,
        INDEX_PREFIX.replace("_", "\\_") + "%",
        TABLE,
    )
    out = []
    for r in rows:
        parsed = parse_index_name(r["name"])
        out.append(
            LiveIndex(
                r["name"],
                parsed[0] if parsed else None,
                parsed[2] if parsed else None,
                bool(r["valid"]),
                bool(r["building"]),
            )
        )
    return out


async def index_facts(conn: asyncpg.Connection, space_id: int) -> dict[str, Any] | None:
    row = await conn.fetchrow("SELECT * FROM mahavishnu.vector_indexes WHERE space_id = $1", space_id)
    return dict(row) if row else None


async def all_index_facts(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT a.*, s.provider, s.model FROM mahavishnu.vector_indexes a
             JOIN mahavishnu.embedding_spaces s ON s.id = a.space_id ORDER BY a.space_id"""
    )
    return [dict(r) for r in rows]


async def usable_index(conn: asyncpg.Connection, space_id: int) -> dict[str, Any] | None:
    """The recorded index of a space if it exists and is valid right now, else None (search goes exact)."""
    row = await conn.fetchrow(
        """SELECT a.method, a.index_name, a.search_param, a.search_value, a.dimensions
             FROM mahavishnu.vector_indexes a
             JOIN pg_class c ON c.relname = a.index_name
             JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = $2
             JOIN pg_index i ON i.indexrelid = c.oid AND i.indisvalid AND i.indisready
            WHERE a.space_id = $1 AND a.method <> 'exact'""",
        space_id,
        SCHEMA,
    )
    return dict(row) if row else None


async def space_search_info(conn: asyncpg.Connection, space_id: int) -> dict[str, Any] | None:
    """In one round trip: the space's dimensions, its recorded index and tuned parameter, and whether that
    index exists and is valid right now (None when the space does not exist)."""
    row = await conn.fetchrow(
        """SELECT s.dimensions, a.method, a.params, a.search_param, a.search_value,
                  COALESCE(a.method <> 'exact' AND EXISTS (
                      SELECT 1 FROM pg_class c
                        JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = $2
                        JOIN pg_index i ON i.indexrelid = c.oid AND i.indisvalid AND i.indisready
                       WHERE c.relname = a.index_name), false) AS usable
             FROM mahavishnu.embedding_spaces s
             LEFT JOIN mahavishnu.vector_indexes a ON a.space_id = s.id
            WHERE s.id = $1""",
        space_id,
        SCHEMA,
    )
    return dict(row) if row else None
