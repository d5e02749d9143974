"""Pool load: 500 concurrent vector searches through a pool of 10, against serial and connection-per-query peers.

Usage: python benchmarks/load_bench.py [--rows 20000] [--queries 500] [--pool 10] [--mode exact|hnsw|both] [--write]

Data: chunk-like rows (about 900 characters of code-like text each) with 768-dimension unit vectors in the
project's real schema (chunks + embeddings), on a private embedded server under benchmarks/.work/load.
`exact` scans every vector (no ANN index); `hnsw` builds an HNSW index (m=16, ef_construction=64) first.
Latency is measured two ways: end to end (including the wait for a pool connection) and the query alone.
With --write the figures replace the `## Pool load` section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import statistics
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
from mahavishnu_assets.database.server import ensure_database  # noqa: E402
from mahavishnu_assets.database.target import ConnectTarget  # noqa: E402

DIMS = 768
WORK = ROOT / "benchmarks" / ".work" / "load"
SECTION = "Pool load"
QUERY = """
    WITH top AS (
        SELECT content_hash, embedding <=> $1 AS distance
          FROM mahavishnu.embeddings WHERE space_id = $2
         ORDER BY embedding <=> $1 LIMIT 10)
    SELECT c.path, c.start_line, c.end_line, 1 - t.distance AS score
      FROM top t JOIN mahavishnu.chunks c ON c.content_hash = t.content_hash
     ORDER BY t.distance, c.path, c.start_line
"""


def chunk_texts(n: int, rng: np.random.Generator) -> list[str]:
    words = np.array(
        "def class return self import from async await for while if else try except value result data "
        "index vector chunk repository file path line memory snapshot pool connection cursor".split()
    )
    lines = ["    " + " ".join(rng.choice(words, 8)) + f"({i})" for i in range(4000)]
    picks = rng.integers(0, len(lines), size=(n, 18))
    return ["\n".join(lines[j] for j in row) for row in picks]


def unit_vectors(n: int, rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal((n, DIMS), dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


async def load(target: ConnectTarget, rows: int, rng: np.random.Generator) -> int:
    conn = await connect(target)
    try:
        await conn.execute("TRUNCATE mahavishnu.repositories, mahavishnu.embedding_spaces CASCADE")
        space = await conn.fetchval(
            "INSERT INTO mahavishnu.embedding_spaces (provider, model, dimensions) VALUES ('bench', 'load', $1) "
            "RETURNING id",
            DIMS,
        )
        repo = await conn.fetchval(
            "INSERT INTO mahavishnu.repositories (name, root_path) VALUES ('bench', '/bench') RETURNING id"
        )
        per_file = 40
        files = [
            (repo, f"src/m{i}.py", hashlib.sha256(b"f%d" % i).digest(), "python", 30_000, 1600)
            for i in range(rows // per_file + 1)
        ]
        await conn.copy_records_to_table(
            "source_files",
            schema_name="mahavishnu",
            records=files,
            columns=["repo_id", "path", "content_hash", "language", "size_bytes", "line_count"],
        )
        ids = [r["id"] for r in await conn.fetch("SELECT id FROM mahavishnu.source_files ORDER BY id")]
        texts = chunk_texts(rows, rng)
        hashes = [hashlib.sha256(t.encode() + b"%d" % i).digest() for i, t in enumerate(texts)]
        vectors = unit_vectors(rows, rng)
        await conn.copy_records_to_table(
            "chunks",
            schema_name="mahavishnu",
            records=[
                (
                    ids[i // per_file],
                    repo,
                    i % per_file,
                    f"src/m{i // per_file}.py",
                    "python",
                    (i % per_file) * 40 + 1,
                    (i % per_file) * 40 + 40,
                    texts[i],
                    hashes[i],
                )
                for i in range(rows)
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
        await conn.copy_records_to_table(
            "embeddings",
            schema_name="mahavishnu",
            records=[(space, hashes[i], DIMS, vectors[i]) for i in range(rows)],
            columns=["space_id", "content_hash", "dimensions", "embedding"],
        )
        await conn.execute("VACUUM (ANALYZE) mahavishnu.chunks")
        await conn.execute("VACUUM (ANALYZE) mahavishnu.embeddings")
        return int(space)
    finally:
        await conn.close()


def summary(values_ms: list[float]) -> dict[str, float]:
    # Percentiles interpolated between samples (numpy's default); a single sample is every percentile.
    cuts = (
        statistics.quantiles(values_ms, n=100, method="inclusive") if len(values_ms) > 1 else values_ms * 99
    )
    return {
        "p50_ms": round(cuts[49], 2),
        "p95_ms": round(cuts[94], 2),
        "p99_ms": round(cuts[98], 2),
        "max_ms": round(max(values_ms), 2),
        "mean_ms": round(statistics.fmean(values_ms), 2),
    }


async def through_pool(db: Database, query: str, queries: np.ndarray, space: int) -> dict:
    total: list[float] = []
    query_only: list[float] = []
    # (acquire order, query ms): the first wave is timed while this one process is still starting the other
    # hundreds of tasks, which delays reading their results; reported apart so both views are visible.
    ordered: list[tuple[float, float]] = []
    errors: list[str] = []

    async def one(vector: np.ndarray) -> None:
        started = time.perf_counter()
        try:
            async with db.connection() as conn:
                acquired = time.perf_counter()
                rows = await conn.fetch(query, vector, space)
                done = time.perf_counter()
            assert len(rows) == 10
            total.append((done - started) * 1000)
            query_only.append((done - acquired) * 1000)
            ordered.append((acquired, (done - acquired) * 1000))
        except Exception as exc:  # counted, not raised: the benchmark reports every error
            errors.append(f"{type(exc).__name__}: {exc}")

    started = time.perf_counter()
    await asyncio.gather(*(one(v) for v in queries))
    wall = time.perf_counter() - started
    return {
        "errors": len(errors),
        "error_samples": errors[:3],
        "wall_seconds": round(wall, 3),
        "qps": round(len(queries) / wall, 1),
        "end_to_end": summary(total) if total else None,
        "query": summary(query_only) if query_only else None,
        "query_after_first_wave": summary([ms for _, ms in sorted(ordered)[db.config.max_size :]])
        if len(ordered) > db.config.max_size
        else None,
        "pool": db.stats().to_dict(),
    }


async def serial(target: ConnectTarget, query: str, queries: np.ndarray, space: int) -> dict:
    conn = await connect(target)
    times: list[float] = []
    try:
        started = time.perf_counter()
        for v in queries:
            t = time.perf_counter()
            await conn.fetch(query, v, space)
            times.append((time.perf_counter() - t) * 1000)
        wall = time.perf_counter() - started
    finally:
        await conn.close()
    return {"wall_seconds": round(wall, 3), "qps": round(len(queries) / wall, 1), "query": summary(times)}


async def connection_per_query(
    target: ConnectTarget, query: str, queries: np.ndarray, space: int, concurrency: int
) -> dict:
    gate = asyncio.Semaphore(concurrency)
    times: list[float] = []
    errors = 0

    async def one(v: np.ndarray) -> None:
        nonlocal errors
        async with gate:
            t = time.perf_counter()
            try:
                conn = await connect(target)
                try:
                    await conn.fetch(query, v, space)
                finally:
                    await conn.close()
                times.append((time.perf_counter() - t) * 1000)
            except Exception:
                errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(one(v) for v in queries))
    wall = time.perf_counter() - started
    return {
        "wall_seconds": round(wall, 3),
        "qps": round(len(queries) / wall, 1),
        "errors": errors,
        "query": summary(times),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--pool", type=int, default=10)
    parser.add_argument("--mode", choices=["exact", "hnsw", "both"], default="both")
    parser.add_argument("--reuse", action="store_true", help="keep the data of a previous run")
    parser.add_argument("--write", action="store_true", help="write the results into benchmarks/RESULTS.md")
    args = parser.parse_args()

    server = EmbeddedServer(WORK)
    target = (await asyncio.to_thread(server.start)).with_database("bench")
    await ensure_database(target)
    await migrate_up(target)
    rng = np.random.default_rng(7)
    conn = await connect(target)
    facts = run_facts(await server_versions(conn))
    have = await conn.fetchval("SELECT count(*) FROM mahavishnu.embeddings")
    space = await conn.fetchval("SELECT id FROM mahavishnu.embedding_spaces WHERE model = 'load'")
    await conn.close()
    if not (args.reuse and have == args.rows and space):
        started = time.perf_counter()
        space = await load(target, args.rows, rng)
        print(f"loaded {args.rows} rows in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    queries = unit_vectors(args.queries, np.random.default_rng(11))

    report: dict = {
        "facts": facts,
        "rows": args.rows,
        "dimensions": DIMS,
        "queries": args.queries,
        "pool_max_size": args.pool,
        "modes": {},
    }
    modes = ["exact", "hnsw"] if args.mode == "both" else [args.mode]
    for mode in modes:
        conn = await connect(target)
        await conn.execute("DROP INDEX IF EXISTS mahavishnu.ann_bench_hnsw")
        if mode == "hnsw":
            t = time.perf_counter()
            await conn.execute("SET maintenance_work_mem = '512MB'")
            await conn.execute(
                "CREATE INDEX ann_bench_hnsw ON mahavishnu.embeddings USING hnsw "
                "((embedding::vector(768)) vector_cosine_ops) WITH (m = 16, ef_construction = 64)"
            )
            build = time.perf_counter() - t
        await conn.close()
        query = (
            QUERY if mode == "exact" else QUERY.replace("embedding <=> $1", "embedding::vector(768) <=> $1")
        )
        db = await Database(
            target,
            PoolConfig(min_size=args.pool, max_size=args.pool, acquire_timeout=300, application_name="bench"),
        ).open()
        try:
            async with db.connection() as c:  # check the plan
                plan = "\n".join(r[0] for r in await c.fetch("EXPLAIN " + query, queries[0], space))
            # Steady state: every pooled connection has prepared the statement and the pages are cached.
            warm = unit_vectors(args.pool * 2, np.random.default_rng(3))
            await through_pool(db, query, warm, space)
            db._counters = type(db._counters)()
            pooled = await through_pool(db, query, queries, space)
        finally:
            await db.close()
        result = {
            "uses_index": "ann_bench_hnsw" in plan,
            f"pool_of_{args.pool}": pooled,
            "serial_one_connection": await serial(target, query, queries, space),
            f"connection_per_query_x{args.pool}": await connection_per_query(
                target, query, queries, space, args.pool
            ),
        }
        if mode == "hnsw":
            result["index_build_seconds"] = round(build, 2)
        e2e, q = pooled["end_to_end"], pooled["query"]
        steady = pooled["query_after_first_wave"]
        result["checks"] = {
            "zero_errors": pooled["errors"] == 0,
            "end_to_end_p99_within_5x_p50": e2e["p99_ms"] <= 5 * e2e["p50_ms"],
            "query_after_first_wave_p99_within_5x_p50": steady["p99_ms"] <= 5 * steady["p50_ms"],
        }
        # Informational: includes the first wave's client-side delay described in through_pool.
        result["query_p99_over_p50"] = round(q["p99_ms"] / q["p50_ms"], 2)
        report["modes"][mode] = result
        print(
            json.dumps(
                {
                    mode: result["checks"],
                    "qps": pooled["qps"],
                    "query": q,
                    "steady": steady,
                    "end_to_end": e2e,
                }
            ),
            file=sys.stderr,
        )
    print(json.dumps(report, indent=2, default=str))
    if args.write:
        print(f"wrote {write_section(SECTION, markdown(report, args))}", file=sys.stderr)
    if not all(all(m["checks"].values()) for m in report["modes"].values()):
        sys.exit(1)


def way_row(label: str, way: dict, end_to_end: bool) -> str:
    e2e = way.get("end_to_end") if end_to_end else None
    return (
        f"| {label} | {way['qps']} | {way.get('errors', 0)} | {way['query']['p50_ms']} | {way['query']['p99_ms']} | "
        + (f"{e2e['p50_ms']} | {e2e['p99_ms']} |" if e2e else "— | — |")
    )


def markdown(report: dict, args: argparse.Namespace) -> str:
    """The `## Pool load` section: facts, the method, one table per mode and its checks."""
    pool, queries = report["pool_max_size"], report["queries"]
    lines = [
        facts_markdown(report["facts"])
        + " Private embedded server under `benchmarks/.work/load` (shared_buffers 256MB).",
        "",
        f"Command: `python benchmarks/load_bench.py --rows {report['rows']} --queries {queries} --pool {pool} "
        f"--mode {args.mode} --write` (defaults: `--rows 20000 --queries 500 --pool 10 --mode both`).",
        "",
        f"Data: {report['rows']} chunk-like rows (about 900 characters of code-like text) with {DIMS}-dimension "
        "unit vectors in the real schema (`chunks` + `embeddings`). Each search is top-10 by cosine distance "
        f"joined back to its chunk. {queries} searches are launched at once through a `Database` pool of {pool} "
        "(after one warm-up pass so every pooled connection has prepared the statement). Peers in the same run: "
        f"the same {queries} searches one after another on one connection (the server's throughput floor for "
        f"one client), and connection-per-query with {pool} at a time (no pool).",
    ]
    titles = {
        "exact": "Exact search (no ANN index: every vector is scanned)",
        "hnsw": "Indexed search (HNSW m=16, ef_construction=64, default ef_search 40)",
    }
    for mode, result in report["modes"].items():
        pooled = result[f"pool_of_{pool}"]
        serial = result["serial_one_connection"]
        per_query = result[f"connection_per_query_x{pool}"]
        e2e, steady = pooled["end_to_end"], pooled["query_after_first_wave"]
        lines += ["", f"### {titles[mode]}", ""]
        if "index_build_seconds" in result:
            lines += [
                f"Index build: {result['index_build_seconds']} s; the plan uses the index: {result['uses_index']}.",
                "",
            ]
        lines += [
            "| way | searches/s | errors | query p50 ms | query p99 ms | end-to-end p50 ms | end-to-end p99 ms |",
            "|---|---|---|---|---|---|---|",
            way_row(f"pool of {pool}, {queries} concurrent", pooled, True),
            way_row("one connection, serial", serial, False),
            way_row(f"connection per query, {pool} at a time", per_query, False),
            "",
            f"Pool of {pool}: {pooled['errors']} errors; end-to-end p99/p50 = "
            f"{round(e2e['p99_ms'] / e2e['p50_ms'], 2)} and query p99/p50 = {result['query_p99_over_p50']}"
            + (
                f" (without the first wave of {pool}: p50 {steady['p50_ms']} ms, p99 {steady['p99_ms']} ms)"
                if steady
                else ""
            )
            + ". Pool against connection per query: "
            f"{round(pooled['qps'] / per_query['qps'], 1)}x the searches/s; against one serial connection: "
            f"{round(pooled['qps'] / serial['qps'], 1)}x. Checks: "
            + ", ".join(f"{name} {'✅' if ok else '❌'}" for name, ok in result["checks"].items())
            + ".",
        ]
    lines += [
        "",
        f"Reading: *end-to-end* includes waiting for a pooled connection ({queries - pool} searches queue behind "
        f"{pool}), so it grows with the queue; *query* is the time from getting the connection to the result. "
        f"The first {pool} queries are timed while the same Python process is still starting the other tasks, "
        "which delays reading their results; they are reported both with and without. With fewer cores than "
        "connections, pooled searches mostly queue inside PostgreSQL (`get_pool_recommendations` says the same "
        "when callers wait).",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    asyncio.run(main())
