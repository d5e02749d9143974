"""Taking snapshots, deleting them, retention, and the storage figures of what they keep.

* Create (one REPEATABLE READ transaction): a full outer join of the live `(key, xmin)` pairs against the open
  versions (`until_snapshot IS NULL`) closes the versions whose row changed or vanished and opens a narrow
  version row for every new or changed row. Rows unchanged since the previous snapshot cost nothing: their open
  version simply stays valid. No row data is copied at all, so the first snapshot of 100,000 chunks costs about
  the time to write 100,000 narrow rows (with the version table's key built once afterwards), and the next ones
  only the join. Tables no committed transaction touched since the last snapshot (statement triggers record
  `(table, xid)` in `snapshot_touches`, transactionally) are not even joined.
* Copy on write: statement-level triggers on the live tables (migration 0030) copy the old values into every
  version still pointing at a row just before it is updated, deleted or truncated. Ingesting inserts pays
  nothing; an update or delete pays one keyed UPDATE of the versions table, and none when no snapshot exists.
  The triggers take a shared advisory lock that a snapshot holds exclusively from before its transaction
  snapshot until it has committed, so a version it records is always visible to the trigger that must fill it.
  A REPEATABLE READ or SERIALIZABLE writer that started before a snapshot committed cannot see that snapshot's
  versions; its trigger raises a serialization failure instead (detected through `snapshot_clock`), and the
  writer retries.
* Delete and retention remove the snapshot row, then the versions no remaining snapshot id falls into.

Taking, deleting and expiring snapshots expect the caller to hold OPS_LOCK on `conn`.
"""

# Dynamic SQL here only interpolates identifiers from TABLES or the catalog, quoted by ident(); every value is
# a bind parameter.
# ruff: noqa: S608

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

import asyncpg

from mahavishnu_assets.errors import SnapshotError
from mahavishnu_assets.memory.snapshots.tables import (
    CAPTURE_LOCK,
    SCHEMA,
    TABLE_NAMES,
    TABLES,
    SnapshotTable,
    advisory_lock,
    ident,
    key_match,
    qualified,
    snapshot_dict,
    visible,
)

logger = logging.getLogger(__name__)


async def take_snapshot(
    conn: asyncpg.Connection, name: str | None, partition_key: str | None, *, lock_timeout_ms: int
) -> dict[str, Any]:
    """Record a snapshot of every table in TABLES and return it as `get` would."""
    started = time.perf_counter()
    # Taken before the transaction so its snapshot sees every writer that finished preserving rows.
    async with advisory_lock(
        conn, CAPTURE_LOCK, "take a snapshot (writers are updating snapshotted rows)", lock_timeout_ms
    ):
        try:
            return await _capture_all(conn, name, partition_key, started)
        except asyncpg.exceptions.LockNotAvailableError:
            raise SnapshotError(
                "Timed out waiting for a lock while taking the snapshot",
                suggestion="A snapshot search or maintenance held the version tables; retry. Nothing was saved.",
            ) from None


async def _capture_all(
    conn: asyncpg.Connection, name: str | None, partition_key: str | None, started: float
) -> dict[str, Any]:
    async with conn.transaction(isolation="repeatable_read"):
        row = await conn.fetchrow(
            f"""INSERT INTO {SCHEMA}.memory_snapshots (name, partition_key)
                VALUES (coalesce($1, 'snapshot-' || to_char(now() AT TIME ZONE 'UTC',
                        'YYYY-MM-DD"T"HH24:MI:SS"Z"')), $2)
                RETURNING id""",
            name,
            partition_key,
        )
        assert row is not None
        snapshot_id = int(row["id"])
        # Tables no transaction visible to us changed since the last snapshot keep their open versions.
        touched = {
            r["table_name"]
            for r in await conn.fetch(f"DELETE FROM {SCHEMA}.snapshot_touches RETURNING table_name")
        }
        first = not await conn.fetchval(
            f"SELECT EXISTS (SELECT 1 FROM {SCHEMA}.memory_snapshots WHERE id < $1)", snapshot_id
        )
        tables: dict[str, dict[str, int]] = {}
        for table in TABLES:
            compare = first or table.name in touched
            tables[table.name] = await _capture(conn, table, snapshot_id, compare=compare)
        stats = {
            "compared_tables": sorted(t.name for t in TABLES if first or t.name in touched),
            "rows": {t: v["rows"] for t, v in tables.items()},
            "new_versions": {t: v["added"] for t, v in tables.items()},
            "closed_versions": {t: v["closed"] for t, v in tables.items()},
            "total_rows": sum(v["rows"] for v in tables.values()),
            "shared_rows": sum(v["rows"] - v["added"] for v in tables.values()),
            "seconds": round(time.perf_counter() - started, 4),
        }
        await conn.execute(
            f"UPDATE {SCHEMA}.memory_snapshots SET stats = $2 WHERE id = $1", snapshot_id, stats
        )
        # Lets REPEATABLE READ writers that started earlier detect this snapshot (see 0030).
        await conn.execute(f"SELECT setval('{SCHEMA}.snapshot_clock', pg_current_xact_id()::text::bigint)")
        result = await conn.fetchrow(f"SELECT * FROM {SCHEMA}.memory_snapshots WHERE id = $1", snapshot_id)
    logger.info(
        "Snapshot %s taken: %s rows, %s new versions",
        snapshot_id,
        stats["total_rows"],
        sum(tables[t]["added"] for t in tables),
    )
    assert result is not None
    return snapshot_dict(result)


async def _capture(
    conn: asyncpg.Connection, table: SnapshotTable, snapshot_id: int, *, compare: bool = True
) -> dict[str, int]:
    store = qualified(table.store)
    if not compare:
        rows = await conn.fetchval(f"SELECT count(*) FROM {store} WHERE until_snapshot IS NULL")
        return {"rows": int(rows), "added": 0, "closed": 0}
    keys = ", ".join(ident(k) for k in table.key)
    if not await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {store})"):
        return await _capture_bulk(conn, table, snapshot_id)
    coalesced = ", ".join(f"coalesce(l.{ident(k)}, o.{ident(k)}) AS {ident(k)}" for k in table.key)
    sql = f"""
        WITH live AS (SELECT {keys}, xmin AS row_xmin FROM {qualified(table.name)}),
        open AS (SELECT {keys}, row_xmin, first_snapshot FROM {store} WHERE until_snapshot IS NULL),
        diff AS (
            SELECT {coalesced}, l.row_xmin AS live_xmin, o.first_snapshot AS open_first
              FROM live l FULL JOIN open o ON {key_match("o", "l", table.key)} AND o.row_xmin = l.row_xmin
             WHERE l.row_xmin IS NULL OR o.first_snapshot IS NULL
        ),
        closed AS (
            UPDATE {store} s SET until_snapshot = $1 FROM diff d
             WHERE d.live_xmin IS NULL AND {key_match("s", "d", table.key)} AND s.first_snapshot = d.open_first
            RETURNING 1
        ),
        added AS (
            INSERT INTO {store} ({keys}, row_xmin, first_snapshot)
            SELECT {keys}, live_xmin, $1 FROM diff WHERE open_first IS NULL
            RETURNING 1
        )
        SELECT (SELECT count(*) FROM closed) AS closed, (SELECT count(*) FROM added) AS added
    """
    row = await conn.fetchrow(sql, snapshot_id)
    rows = await conn.fetchval(f"SELECT count(*) FROM {store} v WHERE {visible('v')}", snapshot_id)
    assert row is not None
    return {"rows": int(rows), "added": int(row["added"]), "closed": int(row["closed"])}


async def _capture_bulk(conn: asyncpg.Connection, table: SnapshotTable, snapshot_id: int) -> dict[str, int]:
    """No versions yet (first snapshot, or all released): every live row is new. Writing them without the
    primary key and building it afterwards is several times cheaper than maintaining it row by row; the
    DDL is part of this transaction, so a failure leaves the key as it was."""
    keys = ", ".join(ident(k) for k in table.key)
    store = qualified(table.store)
    constraint = ident(f"{table.store}_pkey")
    await conn.execute(f"ALTER TABLE {store} DROP CONSTRAINT {constraint}")
    status = await conn.execute(
        f"""INSERT INTO {store} ({keys}, row_xmin, first_snapshot)
            SELECT {keys}, xmin, $1 FROM {qualified(table.name)}""",
        snapshot_id,
    )
    await conn.execute(
        f"ALTER TABLE {store} ADD CONSTRAINT {constraint} PRIMARY KEY ({keys}, first_snapshot)"
    )
    added = int(status.split()[-1])
    return {"rows": added, "added": added, "closed": 0}


async def delete_snapshots(conn: asyncpg.Connection, ids: list[int]) -> list[dict[str, Any]]:
    """Delete these snapshots and the versions no remaining snapshot needs; run inside a transaction."""
    rows = await conn.fetch(
        f"DELETE FROM {SCHEMA}.memory_snapshots WHERE id = ANY($1::bigint[]) RETURNING *", ids
    )
    if not rows:
        return []
    newest_left = await conn.fetchval(f"SELECT max(id) FROM {SCHEMA}.memory_snapshots")
    if newest_left is None or newest_left < max(r["id"] for r in rows):
        # The newest snapshot goes with its open versions: the next one must compare every table again.
        await conn.execute(
            f"""INSERT INTO {SCHEMA}.snapshot_touches (table_name, xid)
                SELECT t, pg_current_xact_id() FROM unnest($1::text[]) t ON CONFLICT DO NOTHING""",
            list(TABLE_NAMES),
        )
    released = 0
    for table in TABLES:
        # Only versions that covered a deleted snapshot can have lost their last reader.
        status = await conn.execute(
            f"""DELETE FROM {qualified(table.store)} v
                 WHERE EXISTS (SELECT 1 FROM unnest($1::bigint[]) d(id)
                                WHERE v.first_snapshot <= d.id
                                  AND (v.until_snapshot IS NULL OR v.until_snapshot > d.id))
                   AND NOT EXISTS (SELECT 1 FROM {SCHEMA}.memory_snapshots s
                                    WHERE s.id >= v.first_snapshot
                                      AND (v.until_snapshot IS NULL OR s.id < v.until_snapshot))""",
            [r["id"] for r in rows],
        )
        released += int(status.split()[-1])
    out = []
    for r in rows:
        item = snapshot_dict(r)
        item["versions_released"] = released
        out.append(item)
    return out


async def expired_snapshots(conn: asyncpg.Connection, keep: int, cutoff: datetime) -> list[int]:
    """Ids past the newest `keep` or created before `cutoff`; never the newest snapshot."""
    rows = await conn.fetch(
        f"""SELECT id FROM (
                SELECT id, created_at,
                       row_number() OVER (ORDER BY created_at DESC, id DESC) AS rank
                  FROM {SCHEMA}.memory_snapshots) s
             WHERE rank > 1 AND (rank > $1 OR created_at < $2)""",
        keep,
        cutoff,
    )
    return [r["id"] for r in rows]


async def storage_stats(conn: asyncpg.Connection) -> dict[str, Any]:
    """How many snapshots, how many row versions back them, and how much sharing saves."""
    snapshots = await conn.fetch(f"SELECT id, stats FROM {SCHEMA}.memory_snapshots ORDER BY created_at, id")
    tables: dict[str, Any] = {}
    for table in TABLES:
        row = await conn.fetchrow(
            f"""SELECT count(*) AS versions, count(*) FILTER (WHERE data IS NOT NULL) AS copied,
                       count(*) FILTER (WHERE until_snapshot IS NULL) AS open,
                       pg_total_relation_size($1::regclass) AS bytes
                  FROM {qualified(table.store)}""",
            f"{SCHEMA}.{table.store}",
        )
        assert row is not None
        tables[table.name] = dict(row)
    logical = sum(int((s["stats"] or {}).get("total_rows", 0)) for s in snapshots)
    versions = sum(int(t["versions"]) for t in tables.values())
    return {
        "snapshots": len(snapshots),
        "oldest_id": snapshots[0]["id"] if snapshots else None,
        "newest_id": snapshots[-1]["id"] if snapshots else None,
        "logical_rows": logical,
        "stored_versions": versions,
        "copied_rows": sum(int(t["copied"]) for t in tables.values()),
        "sharing_ratio": round(logical / versions, 3) if versions else None,
        "bytes": sum(int(t["bytes"]) for t in tables.values()),
        "tables": tables,
    }
