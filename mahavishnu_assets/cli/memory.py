"""`mahavishnu snapshot create|list|show|restore|delete|search|stats` and `mahavishnu maintain`."""

from __future__ import annotations

import argparse
from typing import Any

from mahavishnu_assets.cli.output import SubParsers, subcommand


def _manager(settings: Any, db: Any) -> Any:
    from mahavishnu_assets.memory.snapshots import SnapshotManager

    return SnapshotManager(db, settings)


async def snapshot_create(args: argparse.Namespace) -> dict[str, Any]:
    from mahavishnu_assets.cli.context import opened

    async with opened() as (settings, db):
        return {"snapshot": await _manager(settings, db).create(args.name)}


async def snapshot_list(args: argparse.Namespace) -> dict[str, Any]:
    from mahavishnu_assets.cli.context import opened

    async with opened() as (settings, db):
        return {"snapshots": await _manager(settings, db).list_all(limit=args.limit)}


async def snapshot_show(args: argparse.Namespace) -> dict[str, Any]:
    from mahavishnu_assets.cli.context import opened

    async with opened() as (settings, db):
        return {"snapshot": await _manager(settings, db).get(args.id)}


async def snapshot_restore(args: argparse.Namespace) -> dict[str, Any]:
    from mahavishnu_assets.cli.context import opened

    async with opened() as (settings, db):
        return dict(
            await _manager(settings, db).restore(args.id, safety_snapshot=not args.no_safety_snapshot)
        )


async def snapshot_delete(args: argparse.Namespace) -> dict[str, Any]:
    from mahavishnu_assets.cli.context import opened

    async with opened() as (settings, db):
        return {"snapshot": await _manager(settings, db).delete(args.id), "deleted": True}


async def snapshot_search(args: argparse.Namespace) -> dict[str, Any]:
    from mahavishnu_assets.cli.context import opened

    async with opened() as (settings, db):
        results = await _manager(settings, db).search(args.query, snapshot_id=args.id, k=args.k)
    return {"results": results}


async def snapshot_stats(args: argparse.Namespace) -> dict[str, Any]:
    from mahavishnu_assets.cli.context import opened

    async with opened() as (settings, db):
        return {"stats": await _manager(settings, db).stats()}


async def maintain(args: argparse.Namespace) -> dict[str, Any]:
    from mahavishnu_assets.cli.context import opened
    from mahavishnu_assets.memory.maintenance import run_maintenance

    async with opened() as (settings, db):
        return await run_maintenance(
            db, settings, vacuum=not args.no_vacuum, rebuild_indexes=not args.no_reindex
        )


def _render_snapshot(s: dict[str, Any]) -> str:
    stats = s.get("stats") or {}
    rows = stats.get("total_rows", "?")
    new = sum((stats.get("new_versions") or {}).values())
    restored = f", restored {s['restored_at']}" if s.get("restored_at") else ""
    return f"#{s['id']} {s['name']} ({s['created_at']}): {rows} rows, {new} new versions{restored}"


def render_one(result: dict[str, Any]) -> str:
    lines = [_render_snapshot(result["snapshot"])]
    if result.get("deleted"):
        lines[0] = "deleted " + lines[0]
    if "restored" in result:
        for table, counts in result["restored"].items():
            lines.append(f"  {table}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
        if result.get("safety_snapshot"):
            lines.append(f"undo with: mahavishnu snapshot restore {result['safety_snapshot']['id']}")
    return "\n".join(lines)


def render_list(result: dict[str, Any]) -> str:
    return "\n".join(_render_snapshot(s) for s in result["snapshots"]) or "no snapshots"


def render_search(result: dict[str, Any]) -> str:
    lines = []
    for r in result["results"]:
        where = (
            f"{r['path']}:{r['start_line']}"
            if r["table"] == "chunks"
            else f"memory {r['id']} ({r['memory_type']})"
        )
        lines.append(f"[{r['rank']:.3f}] {where}: {' '.join((r['headline'] or '').split())}")
    return "\n".join(lines) or "no matches"


def render_maintain(result: dict[str, Any]) -> str:
    return (
        f"removed {result['cache_entries_removed']} expired cache entries, {result['sessions_removed']} "
        f"sessions, {result['snapshots_removed']} snapshots, {result['metrics_removed']} old metrics, "
        f"{result['idle_connections_terminated']} idle connections\n"
        f"vacuumed {result['tables_vacuumed']} tables: dead tuples {result['dead_tuples_before']} -> "
        f"{result['dead_tuples_after']}\n"
        f"rebuilt {result['indexes_rebuilt']} ANN indexes; took {result['seconds']:.2f}s"
    )


def register(sub: SubParsers) -> None:
    snapshot = sub.add_parser("snapshot", help="memory snapshots", description="memory snapshots")
    snap_sub = snapshot.add_subparsers(dest="snapshot_command", required=True, metavar="ACTION")
    p = subcommand(snap_sub, "create", snapshot_create, "take a snapshot now", render=render_one)
    p.add_argument("--name", help="a name for it (default: snapshot-<UTC time>)")
    p = subcommand(snap_sub, "list", snapshot_list, "list snapshots, newest first", render=render_list)
    p.add_argument("--limit", type=int, default=None, help="at most this many")
    p = subcommand(snap_sub, "show", snapshot_show, "one snapshot and its statistics", render=render_one)
    p.add_argument("id", type=int)
    p = subcommand(
        snap_sub,
        "restore",
        snapshot_restore,
        "make the live memory exactly a snapshot (atomic)",
        render=render_one,
    )
    p.add_argument("id", type=int)
    p.add_argument(
        "--no-safety-snapshot", action="store_true", help="do not snapshot the current state first (no undo)"
    )
    p = subcommand(snap_sub, "delete", snapshot_delete, "delete a snapshot", render=render_one)
    p.add_argument("id", type=int)
    p = subcommand(
        snap_sub, "search", snapshot_search, "full-text search inside a snapshot", render=render_search
    )
    p.add_argument("query")
    p.add_argument("--id", type=int, default=None, help="the snapshot (default: the newest)")
    p.add_argument("--k", type=int, default=20)
    subcommand(snap_sub, "stats", snapshot_stats, "storage and sharing across snapshots")
    p = subcommand(sub, "maintain", maintain, "cleanup and maintenance now", render=render_maintain)
    p.add_argument("--no-vacuum", action="store_true", help="skip VACUUM (ANALYZE)")
    p.add_argument("--no-reindex", action="store_true", help="skip ANN index rebuilds")


async def pool_status(settings: Any, db: Any) -> dict[str, Any]:
    """`mahavishnu status`: pool health and recommendations."""
    from mahavishnu_assets.memory.monitoring import status_extension

    return await status_extension(settings, db)
