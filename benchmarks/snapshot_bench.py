"""Snapshot cost against a fresh load of the same 100,000-chunk memory, and against a copying snapshot.

Usage: python benchmarks/snapshot_bench.py [--chunks 100000] [--memories 1000] [--write]

"Fresh ingest" is measured as its floor: binary COPY of the files, chunks (with the schema's generated
search column and every index and foreign key), 768-dimension embeddings and memories into the migrated
schema, in one transaction. A real ingest also chunks files and computes the embeddings, so the ratios below
are upper bounds. The "copying snapshot" peer is what a snapshot that copies rows costs: CREATE TABLE AS of the
six snapshotted tables in one REPEATABLE READ transaction. Every measured step starts after a CHECKPOINT.
Private embedded server under benchmarks/.work/snapshot. With --write the figures replace the `## Snapshots`
section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from results import facts_markdown, run_facts, server_versions, write_section  # noqa: E402

from mahavishnu_assets.database.embedded import EmbeddedServer  # noqa: E402
from mahavishnu_assets.database.migrations import migrate_up  # noqa: E402
from mahavishnu_assets.database.pool import Database, PoolConfig, connect  # noqa: E402
from mahavishnu_assets.memory.snapshots import TABLES, SnapshotManager  # noqa: E402
from mahavishnu_assets.settings import Settings  # noqa: E402

DIMS = 768
PER_FILE = 40
WORK = ROOT / "benchmarks" / ".work" / "snapshot"
DATABASE = "snapbench"
SECTION = "Snapshots"


def texts(n: int, rng: np.random.Generator) -> list[str]:
    words = np.array(
        "def class return self import from async await for while if else try except value result data "
        "index vector chunk repository file path line memory snapshot pool connection cursor".split()
    )
    lines = ["    " + " ".join(rng.choice(words, 8)) + f"({i})" for i in range(4000)]
    picks = rng.integers(0, len(lines), size=(n, 18))
    return ["\n".join(lines[j] for j in row) for row in picks]


def vectors(n: int, rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal((n, DIMS), dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


async def fresh_load(conn, chunks: int, memories: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(5)
    body = texts(chunks, rng)
    hashes = [hashlib.sha256(t.encode() + b"%d" % i).digest() for i, t in enumerate(body)]
    vecs = vectors(chunks, rng)
    mem_text = texts(memories, rng)
    mem_vecs = vectors(memories, rng)
    timings: dict[str, float] = {}
    await conn.execute("CHECKPOINT")
    started = time.perf_counter()
    async with conn.transaction():
        space = await conn.fetchval(
            "INSERT INTO mahavishnu.embedding_spaces (provider, model, dimensions) VALUES ('bench', 's', $1) "
            "RETURNING id",
            DIMS,
        )
        repo = await conn.fetchval(
            "INSERT INTO mahavishnu.repositories (name, root_path) VALUES ('bench', '/bench') RETURNING id"
        )
        t = time.perf_counter()
        files = chunks // PER_FILE + 1
        await conn.copy_records_to_table(
            "source_files",
            schema_name="mahavishnu",
            records=[
                (repo, f"src/m{i}.py", hashlib.sha256(b"f%d" % i).digest(), "python", 30_000, 1600)
                for i in range(files)
            ],
            columns=["repo_id", "path", "content_hash", "language", "size_bytes", "line_count"],
        )
        ids = [r["id"] for r in await conn.fetch("SELECT id FROM mahavishnu.source_files ORDER BY id")]
        timings["source_files"] = time.perf_counter() - t
        t = time.perf_counter()
        await conn.copy_records_to_table(
            "chunks",
            schema_name="mahavishnu",
            records=[
                (
                    ids[i // PER_FILE],
                    repo,
                    i % PER_FILE,
                    f"src/m{i // PER_FILE}.py",
                    "python",
                    (i % PER_FILE) * 40 + 1,
                    (i % PER_FILE) * 40 + 40,
                    body[i],
                    hashes[i],
                )
                for i in range(chunks)
            ],
            columns=[
                "file_id",
                "repo_id",
                "chunk_index",
                "path",
                "language",
                "start_line",
                "end_line",
                "content",
                "content_hash",
            ],
        )
        timings["chunks"] = time.perf_counter() - t
        t = time.perf_counter()
        await conn.copy_records_to_table(
            "embeddings",
            schema_name="mahavishnu",
            records=[(space, hashes[i], DIMS, vecs[i]) for i in range(chunks)],
            columns=["space_id", "content_hash", "dimensions", "embedding"],
        )
        timings["embeddings"] = time.perf_counter() - t
        t = time.perf_counter()
        await conn.copy_records_to_table(
            "memories",
            schema_name="mahavishnu",
            records=[("rag", mem_text[i], space, DIMS, mem_vecs[i]) for i in range(memories)],
            columns=["memory_type", "content", "space_id", "dimensions", "embedding"],
        )
        timings["memories"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - started
    return {k: round(v, 3) for k, v in timings.items()}


async def plain_baseline(admin, chunks: int, memories: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """The same COPY into the schema with its generated columns dropped: a stricter, smaller denominator."""
    conn = await connect(admin)
    await conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}_plain" WITH (FORCE)')
    await conn.execute(f'CREATE DATABASE "{DATABASE}_plain"')
    await conn.close()
    target = admin.with_database(f"{DATABASE}_plain")
    await migrate_up(target)
    conn = await connect(target)
    try:
        for row in await conn.fetch(
            "SELECT attname FROM pg_attribute WHERE attrelid = 'mahavishnu.chunks'::regclass AND attgenerated <> ''"
        ):
            await conn.execute(f'ALTER TABLE mahavishnu.chunks DROP COLUMN "{row["attname"]}"')
        return await fresh_load(conn, chunks, memories)
    finally:
        await conn.close()
        conn = await connect(admin)
        await conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}_plain" WITH (FORCE)')
        await conn.close()


async def copying_snapshot(conn) -> float:  # type: ignore[no-untyped-def]
    await conn.execute("CHECKPOINT")
    started = time.perf_counter()
    async with conn.transaction(isolation="repeatable_read"):
        for table in TABLES:
            await conn.execute(
                f"CREATE TABLE mahavishnu.copy_{table.name} AS SELECT * FROM mahavishnu.{table.name}"  # noqa: S608
            )
    seconds = time.perf_counter() - started
    for table in TABLES:
        await conn.execute(f"DROP TABLE mahavishnu.copy_{table.name}")
    return round(seconds, 3)


async def timed_snapshot(manager: SnapshotManager, conn, name: str) -> dict:  # type: ignore[no-untyped-def]
    await conn.execute("CHECKPOINT")
    started = time.perf_counter()
    snap = await manager.create(name)
    seconds = time.perf_counter() - started
    return {
        "id": snap["id"],
        "seconds": round(seconds, 3),
        "total_rows": snap["stats"]["total_rows"],
        "new_versions": sum(snap["stats"]["new_versions"].values()),
        "shared_rows": snap["stats"]["shared_rows"],
    }


async def copied_rows(conn) -> int:  # type: ignore[no-untyped-def]
    total = 0
    for table in TABLES:
        total += await conn.fetchval(f"SELECT count(*) FROM mahavishnu.{table.store} WHERE data IS NOT NULL")  # noqa: S608
    return int(total)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--memories", type=int, default=1_000)
    parser.add_argument(
        "--plain-hash-storage",
        action="store_true",
        help="store embeddings.content_hash PLAIN (inline): with the vector stored MAIN (migration 0022) the "
        "toaster otherwise moves the 32-byte hash out of line, and every read of it goes through TOAST",
    )
    parser.add_argument("--write", action="store_true", help="write the results into benchmarks/RESULTS.md")
    args = parser.parse_args()

    server = EmbeddedServer(WORK)
    admin = (await asyncio.to_thread(server.start)).with_database("postgres")
    conn = await connect(admin)
    await conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
    await conn.execute(f'CREATE DATABASE "{DATABASE}"')
    facts = run_facts(await server_versions(conn))
    await conn.close()
    target = admin.with_database(DATABASE)
    await migrate_up(target)
    if args.plain_hash_storage:
        conn = await connect(target)
        await conn.execute("ALTER TABLE mahavishnu.embeddings ALTER COLUMN content_hash SET STORAGE PLAIN")
        await conn.close()
    plain = await plain_baseline(admin, args.chunks, args.memories)

    conn = await connect(target)
    db = await Database(target, PoolConfig(min_size=1, max_size=2)).open()
    settings = Settings()
    manager = SnapshotManager(db, settings)
    report: dict = {
        "facts": facts,
        "chunks": args.chunks,
        "memories": args.memories,
        "dimensions": DIMS,
        "embeddings_content_hash_storage": "plain" if args.plain_hash_storage else "as migrated",
    }
    try:
        report["fresh_ingest_copy"] = await fresh_load(conn, args.chunks, args.memories)
        report["plain_copy_without_generated_columns"] = plain
        await conn.execute("VACUUM (ANALYZE)")
        fresh = report["fresh_ingest_copy"]["total"]
        print(f"fresh COPY load: {fresh:.2f}s", file=sys.stderr)

        # Writers before any snapshot exists: the copy-on-write trigger returns at once.
        sample = max(1, args.chunks // 100)
        await conn.execute("CHECKPOINT")
        t = time.perf_counter()
        await conn.execute("UPDATE mahavishnu.chunks SET commit = 'a' WHERE id % 100 = 1")
        update_no_snapshot = time.perf_counter() - t

        report["copying_snapshot_seconds"] = await copying_snapshot(conn)
        first = await timed_snapshot(manager, conn, "first")
        second = await timed_snapshot(manager, conn, "unchanged")
        await conn.execute("CHECKPOINT")
        t = time.perf_counter()
        await conn.execute("UPDATE mahavishnu.chunks SET commit = 'b' WHERE id % 100 = 2")
        update_with_snapshots = time.perf_counter() - t
        third = await timed_snapshot(manager, conn, "one-percent-updated")
        await conn.execute("CHECKPOINT")
        t = time.perf_counter()
        await conn.execute(
            "DELETE FROM mahavishnu.embeddings WHERE content_hash IN "
            "(SELECT content_hash FROM mahavishnu.chunks WHERE id % 100 = 3)"
        )
        await conn.execute("DELETE FROM mahavishnu.chunks WHERE id % 100 = 3")
        delete_with_snapshots = time.perf_counter() - t
        fourth = await timed_snapshot(manager, conn, "one-percent-deleted")
        copied = await copied_rows(conn)
        await conn.execute("CHECKPOINT")
        t = time.perf_counter()
        restore = await manager.restore(first["id"], safety_snapshot=False)
        restore_seconds = time.perf_counter() - t
        live_bytes = await conn.fetchval(
            "SELECT sum(pg_total_relation_size(('mahavishnu.' || t)::regclass)) FROM unnest($1::text[]) t",
            [t.name for t in TABLES],
        )
        snap_bytes = await conn.fetchval(
            "SELECT sum(pg_total_relation_size(('mahavishnu.' || t)::regclass)) FROM unnest($1::text[]) t",
            [t.store for t in TABLES],
        )
        report["snapshots"] = {
            "first": first,
            "unchanged": second,
            "after_1pct_update": third,
            "after_1pct_delete": fourth,
        }
        report["writers"] = {
            "update_1pct_chunks_no_snapshot_seconds": round(update_no_snapshot, 3),
            "update_1pct_chunks_with_snapshots_seconds": round(update_with_snapshots, 3),
            "delete_1pct_chunks_and_embeddings_with_snapshots_seconds": round(delete_with_snapshots, 3),
            "rows_sampled": sample,
        }
        report["rows_copied_into_snapshot_storage"] = copied
        report["restore_first_seconds"] = round(restore_seconds, 3)
        report["restore_counts"] = restore["restored"]
        report["storage"] = {"live_bytes": int(live_bytes), "snapshot_bytes": int(snap_bytes)}
        report["ratios_to_fresh_ingest"] = {
            "first_snapshot": round(first["seconds"] / fresh, 4),
            "unchanged_snapshot": round(second["seconds"] / fresh, 4),
            "snapshot_after_1pct_update": round(third["seconds"] / fresh, 4),
            "snapshot_after_1pct_delete": round(fourth["seconds"] / fresh, 4),
            "copying_snapshot_peer": round(report["copying_snapshot_seconds"] / fresh, 4),
        }
        report["ratios_to_plain_copy"] = {
            "first_snapshot": round(first["seconds"] / plain["total"], 4),
            "snapshot_after_1pct_delete": round(fourth["seconds"] / plain["total"], 4),
        }
        report["checks"] = {
            "every_snapshot_within_10pct_of_fresh_ingest": all(
                s["seconds"] <= 0.10 * fresh for s in (first, second, third, fourth)
            ),
            "unchanged_snapshot_adds_no_versions": second["new_versions"] == 0,
        }
    finally:
        await db.close()
        await conn.close()
    print(json.dumps(report, indent=2))
    if args.write:
        print(f"wrote {write_section(SECTION, markdown(report))}", file=sys.stderr)
    if not all(report["checks"].values()):
        sys.exit(1)


def restored_text(counts: dict[str, dict[str, int]]) -> str:
    """`{"chunks": {"updated": 40, "inserted": 40, ...}, ...}` as "chunks: 40 updated, 40 inserted; ..."."""
    parts = []
    for table, done in counts.items():
        changed = ", ".join(f"{n} {what}" for what, n in done.items() if n)
        if changed:
            parts.append(f"{table}: {changed}")
    return "; ".join(parts) or "nothing to change"


def markdown(report: dict) -> str:
    """The `## Snapshots` section: facts, the method, the table of steps, sharing, writers and the verdict."""
    fresh, plain = (
        report["fresh_ingest_copy"]["total"],
        report["plain_copy_without_generated_columns"]["total"],
    )
    snaps, writers, storage = report["snapshots"], report["writers"], report["storage"]
    first, unchanged = snaps["first"], snaps["unchanged"]
    updated, deleted = snaps["after_1pct_update"], snaps["after_1pct_delete"]
    files = report["chunks"] // PER_FILE + 1
    options = " --plain-hash-storage" if report["embeddings_content_hash_storage"] == "plain" else ""

    def step(label: str, seconds: float) -> str:
        return f"| {label} | {seconds} | {100 * seconds / fresh:.1f}% | {100 * seconds / plain:.1f}% |"

    steps = [
        step("first snapshot (no versions yet)", first["seconds"]),
        step("next snapshot, nothing changed", unchanged["seconds"]),
        step("after updating 1% of chunks", updated["seconds"]),
        step("after deleting 1% of chunks and their embeddings", deleted["seconds"]),
        step(
            f"peer: copying snapshot (CREATE TABLE AS of the {len(TABLES)} tables, one REPEATABLE READ "
            "transaction)",
            report["copying_snapshot_seconds"],
        ),
        f"| restore of the first snapshot ({restored_text(report['restore_counts'])}) | "
        f"{report['restore_first_seconds']} | | |",
    ]
    worst = max(s["seconds"] for s in snaps.values())
    checks = ", ".join(f"{name} {'✅' if ok else '❌'}" for name, ok in report["checks"].items())
    mb = 2**20
    lines = [
        facts_markdown(report["facts"])
        + " Private embedded server under `benchmarks/.work/snapshot` (shared_buffers 256MB).",
        "",
        f"Command: `python benchmarks/snapshot_bench.py --chunks {report['chunks']} --memories "
        f"{report['memories']}{options} --write` (defaults: `--chunks 100000 --memories 1000`); every measured "
        "step starts after a CHECKPOINT.",
        "",
        f"Memory: {report['chunks']} chunks in {files} files with {report['chunks']} embeddings of "
        f"{report['dimensions']} dimensions and {report['memories']} memories: {first['total_rows']} rows, "
        f"{storage['live_bytes'] / mb:.0f} MB live. `embeddings.content_hash` storage: "
        f"{report['embeddings_content_hash_storage']}.",
        "",
        "**Fresh ingest, measured as its floor**: binary COPY of the same files, chunks, embeddings and memories "
        "into the migrated schema in one transaction (indexes, foreign keys and the search column generated from "
        "each chunk included); a real ingest also chunks files and computes embeddings, so the true ratios are "
        "smaller still. A stricter second denominator copies into the same schema with the generated search "
        "column dropped.",
        "",
        f"| step | seconds | vs fresh COPY ({fresh:.1f} s) | vs COPY without generated column ({plain:.1f} s) |",
        "|---|---|---|---|",
        *steps,
        "",
        f"Sharing: the unchanged snapshot added {unchanged['new_versions']} versions ({unchanged['shared_rows']} "
        f"of {unchanged['total_rows']} rows shared); after the 1% update it added {updated['new_versions']}. Row "
        "data copied into snapshot storage over the whole run (only rows updated or deleted while a snapshot "
        f"pointed at them, by the copy-on-write triggers): {report['rows_copied_into_snapshot_storage']} rows. "
        f"Snapshot storage for 4 snapshots: {storage['snapshot_bytes'] / mb:.1f} MB against "
        f"{storage['live_bytes'] / mb:.0f} MB live.",
        "",
        f"Writers: updating 1% of chunks took {writers['update_1pct_chunks_no_snapshot_seconds']} s with no "
        f"snapshot and {writers['update_1pct_chunks_with_snapshots_seconds']} s with snapshots pointing at those "
        "rows (copy-on-write included); deleting 1% of chunks and embeddings with snapshots: "
        f"{writers['delete_1pct_chunks_and_embeddings_with_snapshots_seconds']} s. Inserts pay only a "
        "per-statement touch row.",
        "",
        f"Verdict: the costliest snapshot is {100 * worst / fresh:.1f}% of the fresh load (requirement: 10%), an "
        f"unchanged one {100 * unchanged['seconds'] / fresh:.1f}%. Checks: {checks}. `--plain-hash-storage` "
        "stores `embeddings.content_hash` PLAIN: with the vector stored MAIN (migration 0022) the toaster "
        "otherwise moves the 32-byte hash out of line, and a snapshot re-reads it for every row of a table "
        "touched since the previous one.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    asyncio.run(main())
