"""Full-text search over the chunks and memories as a snapshot holds them.

A snapshot's rows are of two kinds: versions still pointing at the live row (read from the live table, through
its stored tsvector and GIN index when it has one) and versions holding a copy (read from their JSON data).
Both are ranked the same way and merged.
"""

# Dynamic SQL here only interpolates identifiers from TABLES or the catalog, quoted by ident(); every value is
# a bind parameter.
# ruff: noqa: S608

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import asyncpg

from mahavishnu_assets.errors import NotFoundError, SnapshotError
from mahavishnu_assets.memory.snapshots.tables import SCHEMA, ident, visible

SEARCHABLE = ("chunks", "memories")


def searched_tables(query: str, tables: Sequence[str] | None) -> set[str]:
    """Check a search request before any connection is taken; returns the tables to search."""
    if not query.strip():
        raise SnapshotError("The search query is empty", suggestion="Give some words to search for.")
    wanted = set(tables or SEARCHABLE)
    unknown = wanted - set(SEARCHABLE)
    if unknown:
        raise SnapshotError(
            f"Cannot search {sorted(unknown)} in snapshots", suggestion="Search chunks or memories."
        )
    return wanted


async def search_snapshot(
    conn: asyncpg.Connection,
    query: str,
    wanted: set[str],
    *,
    snapshot_id: int | None,
    k: int,
    default_config: str,
) -> list[dict[str, Any]]:
    """The best `k` hits in snapshot `snapshot_id` (default: the newest) of the tables in `wanted`."""
    if snapshot_id is None:
        snapshot_id = await conn.fetchval(
            f"SELECT id FROM {SCHEMA}.memory_snapshots ORDER BY created_at DESC, id DESC LIMIT 1"
        )
        if snapshot_id is None:
            raise NotFoundError("There are no snapshots to search")
    elif not await conn.fetchval(f"SELECT 1 FROM {SCHEMA}.memory_snapshots WHERE id = $1", snapshot_id):
        raise NotFoundError(f"Snapshot {snapshot_id} does not exist")
    config = default_config
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
                 WHERE v.data IS NULL AND {visible("v")} AND {live_doc} @@ q.q"""
        )
        parts.append(
            f"""SELECT 'chunks', v.id, r.content, r.path, r.start_line, r.end_line, NULL,
                       ts_rank(d.doc, q.q)
                  FROM {SCHEMA}.snap_chunks v
                 CROSS JOIN LATERAL jsonb_populate_record(NULL::{SCHEMA}.chunks, v.data) r
                 CROSS JOIN LATERAL (SELECT {copy_doc} AS doc) d, q
                 WHERE v.data IS NOT NULL AND {visible("v")} AND d.doc @@ q.q"""
        )
    if "memories" in wanted:
        parts.append(
            f"""SELECT 'memories', v.id, m.content, NULL, NULL, NULL, m.memory_type,
                       ts_rank(to_tsvector($2::regconfig, m.content), q.q)
                  FROM {SCHEMA}.snap_memories v JOIN {SCHEMA}.memories m ON m.id = v.id, q
                 WHERE v.data IS NULL AND {visible("v")}
                   AND to_tsvector($2::regconfig, m.content) @@ q.q"""
        )
        parts.append(
            f"""SELECT 'memories', v.id, v.data->>'content', NULL, NULL, NULL, v.data->>'memory_type',
                       ts_rank(to_tsvector($2::regconfig, v.data->>'content'), q.q)
                  FROM {SCHEMA}.snap_memories v, q
                 WHERE v.data IS NOT NULL AND {visible("v")}
                   AND to_tsvector($2::regconfig, v.data->>'content') @@ q.q"""
        )
    try:
        rows = await _search_rows(conn, parts, snapshot_id, config, query, k)
    except asyncpg.exceptions.UndefinedObjectError:
        raise SnapshotError(
            f"Text search configuration {config!r} does not exist on this server",
            suggestion="Set memory.snapshot_search_config to one listed in pg_ts_config (english, simple).",
        ) from None
    return [_hit(snapshot_id, r) for r in rows]


async def _search_rows(
    conn: asyncpg.Connection, parts: list[str], snapshot_id: int, config: str, query: str, k: int
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
