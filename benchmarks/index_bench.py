"""ANN index benchmark: recall@10 and QPS of our tuned IVFFlat and HNSW against exact search and pgvector's
defaults, all in one run on one data set.

    python benchmarks/index_bench.py [--rows 100000] [--dims 768] [--queries 200] [--write]

Data: `rows` vectors shaped like real text embeddings (clustered, anisotropic, normalized; see
mahavishnu_assets/index/synthetic.py), loaded with binary COPY together with one chunk row each, in a private
embedded server under benchmarks/.work/ (nobody else's database is touched). Queries are stored vectors moved
by a random offset (cosine ~0.86 to their source), so none is its own answer. Exact top-10 is the ground truth
(index scans off). Every configuration is timed on the same queries, one client, warm, sequentially. With
--write the figures replace the `## ANN index` section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from results import facts_markdown, run_facts, write_section

from mahavishnu_assets.database.migrations import migrate_up
from mahavishnu_assets.database.pool import Database, PoolConfig, connect
from mahavishnu_assets.database.server import embedded_server
from mahavishnu_assets.index import measure
from mahavishnu_assets.index.build import build_index, drop_index, space_lock
from mahavishnu_assets.index.maintenance import refresh_space
from mahavishnu_assets.index.plan import IndexPlan, index_name
from mahavishnu_assets.index.registry import spaces
from mahavishnu_assets.index.synthetic import queries_near, synthetic_corpus
from mahavishnu_assets.search.core import search
from mahavishnu_assets.settings import Settings

WORK = Path(__file__).resolve().parent / ".work"
DATABASE = "index_bench"
SECTION = "ANN index"
# The requirement this benchmark checks: the product's own choice reaches this recall at this speed-up.
TARGET_RECALL, TARGET_SPEEDUP = 0.95, 20


async def timed_topk(
    conn: Any, space_id: int, dims: int, method: str, value: int, queries: np.ndarray
) -> tuple:
    await measure.ann_topk(conn, space_id, dims, method, value, queries[:10])  # warm
    return await measure.ann_topk(conn, space_id, dims, method, value, queries)


def row(name: str, recall: float | None, latency: measure.Latency, exact_qps: float, note: str = "") -> dict:
    return {
        "config": name,
        "recall_at_10": recall,
        "qps": latency.qps,
        "p50_ms": latency.p50_ms,
        "p99_ms": latency.p99_ms,
        "speedup_vs_exact": round(latency.qps / exact_qps, 1) if exact_qps else None,
        "note": note,
    }


async def main(rows: int, dims: int, n_queries: int) -> dict[str, Any]:
    server = embedded_server(Settings(home=WORK / "home"))
    admin = (await asyncio.to_thread(server.start)).with_database("postgres")
    conn = await connect(admin)
    await conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
    await conn.execute(f'CREATE DATABASE "{DATABASE}"')
    await conn.close()
    target = admin.with_database(DATABASE)
    await migrate_up(target)
    db = await Database(target, PoolConfig(min_size=1, max_size=4, command_timeout=3600)).open()
    out: dict[str, Any] = {"rows": rows, "dims": dims, "queries": n_queries}
    try:
        async with db.connection() as c:
            out["postgres"] = await c.fetchval("SHOW server_version")
            out["pgvector"] = await c.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            started = time.perf_counter()
            space_id, vectors, _ = await synthetic_corpus(c, count=rows, dimensions=dims)
            out["load_seconds"] = round(time.perf_counter() - started, 1)
            await c.execute("VACUUM ANALYZE mahavishnu.embeddings")
            space = next(s for s in await spaces(c) if s.id == space_id)
            queries = queries_near(vectors, n_queries, seed=42)
            del vectors
            truth, exact = await measure.exact_topk(c, space_id, dims, queries)
        print(f"exact: {exact.qps} QPS, p50 {exact.p50_ms} ms", flush=True)
        results = [row("exact (index scans off)", 1.0, exact, exact.qps)]
        builds: dict[str, float] = {}

        # Ours: the product's own path (choice, build, measure, tune) for each configuration, then timed here
        # on the benchmark's queries. "auto" is what the product picks at this size (HNSW at >= 100k rows).
        configs = [
            ("ivfflat", {"method": "ivfflat"}, "rows/1000 rule = pgvector's guidance"),
            ("ivfflat", {"method": "ivfflat", "lists_rule": "sqrt"}, "sqrt rule"),
            ("hnsw", {}, "auto choice"),
        ]
        for method, index_settings, label in configs:
            settings = Settings(index=index_settings)
            report = await refresh_space(db, settings, space)
            method = report["method"]  # auto's own choice (HNSW from 100k rows)
            if not index_settings:
                out["auto_choice"] = {
                    k: report[k] for k in ("method", "params", "search_params", "recall_at_10", "reason")
                }
            builds[f"{method} ({_params(report['params'])}), {label}"] = report["build_seconds"]
            ((param, value),) = report["search_params"].items()
            async with db.connection() as c:
                found, latency = await timed_topk(c, space_id, dims, method, value, queries)
                results.append(
                    row(
                        f"ours {method} {_params(report['params'])}, {param}={value} ({label})",
                        measure.recall(truth, found),
                        latency,
                        exact.qps,
                        f"tuned to 0.95 (95% confidence) on its own sample queries (stored vectors: synthetic data has no embedder; recall there {report['recall_at_10']})",
                    )
                )
                if index_settings.get("lists_rule") != "sqrt":
                    default_value = 1 if method == "ivfflat" else 40
                    found, latency = await timed_topk(c, space_id, dims, method, default_value, queries)
                    param_default = "ivfflat.probes" if method == "ivfflat" else "hnsw.ef_search"
                    results.append(
                        row(
                            f"pgvector default {method} {_params(report['params'])}, {param_default}={default_value}",
                            measure.recall(truth, found),
                            latency,
                            exact.qps,
                            "pgvector's default search parameter",
                        )
                    )
            print(json.dumps(results[-2:]), flush=True)

        # The whole search path (EXISTS over chunks, expansion, tie order), HNSW at the tuned parameter.
        vec_started = time.perf_counter()
        for q in queries:
            await search(db, mode="vector", vector=q, space_id=space_id, k=10)
        ann_seconds = time.perf_counter() - vec_started
        ex_started = time.perf_counter()
        for q in queries[:20]:
            await search(db, mode="vector", vector=q, space_id=space_id, k=10, exact=True)
        ex_seconds = (time.perf_counter() - ex_started) * len(queries) / 20
        out["search_path"] = {
            "ann_qps": round(len(queries) / ann_seconds, 1),
            "exact_qps": round(len(queries) / ex_seconds, 1),
        }

        # The same HNSW build with PostgreSQL's default maintenance_work_mem, for comparison.
        async with space_lock(db.target, space_id) as c:
            plan = IndexPlan("hnsw", rows, dims, {"m": 16, "ef_construction": 64})
            name = index_name(space_id, 900, "hnsw")
            built = await build_index(c, db.target, plan, space_id, name, 64)
            builds["hnsw (m=16, ef_construction=64) with maintenance_work_mem=64MB (PostgreSQL default)"] = (
                round(built.seconds, 1)
            )
            await drop_index(c, name)

        # Why migration 0022 keeps vectors inline: exact search over pgvector's default (TOASTed) storage.
        async with db.connection() as c:
            await c.execute(
                "CREATE TABLE toasted AS SELECT space_id, content_hash, embedding FROM mahavishnu.embeddings"
            )
            await c.execute("VACUUM ANALYZE toasted")
            st = await c.prepare(
                f"SELECT content_hash FROM toasted WHERE space_id = {space_id} "  # noqa: S608
                "ORDER BY embedding <=> $1::vector LIMIT 10"
            )
            seconds = []
            for q in queries[:20]:
                t0 = time.perf_counter()
                await st.fetch(q)
                seconds.append(time.perf_counter() - t0)
            toasted = measure.Latency.of(seconds)
            results.append(
                row(
                    "exact over TOASTed vectors (pgvector's default storage)",
                    1.0,
                    toasted,
                    exact.qps,
                    "20 queries",
                )
            )
            await c.execute("DROP TABLE toasted")
        out["results"] = results
        out["build_seconds"] = builds
    finally:
        await db.close()
    return out


def _params(params: dict[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items())


def markdown(out: dict[str, Any]) -> str:
    lines = [
        f"{out['rows']:,} vectors x {out['dims']} dims (clustered, normalized), {out['queries']} queries, "
        f"PostgreSQL {out['postgres']}, pgvector {out['pgvector']}; load (binary COPY, with chunk rows) "
        f"{out['load_seconds']} s.",
        "",
        "| configuration | recall@10 | QPS | p50 ms | p99 ms | x exact QPS |",
        "|---|---|---|---|---|---|",
    ]
    for r in out["results"]:
        lines.append(
            f"| {r['config']} | {r['recall_at_10']:.3f} | {r['qps']:.1f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
            f"{r['speedup_vs_exact']} |"
        )
    lines += ["", "| index build | seconds |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in out["build_seconds"].items()]
    if "search_path" in out:
        sp = out["search_path"]
        lines += [
            "",
            f"Full `search()` path (chunks join, tie order), vector mode, {out['auto_choice']['method']} tuned: {sp['ann_qps']} QPS "
            f"vs {sp['exact_qps']} exact ({round(sp['ann_qps'] / sp['exact_qps'], 1)}x).",
        ]
    a = out["auto_choice"]
    lines += [
        "",
        f"Auto choice at this size: {a['method']} {a['params']}, {a['search_params']}, recall@10 "
        f"{a['recall_at_10']} ({a['reason']}).",
    ]
    return "\n".join(lines)


def section(out: dict[str, Any]) -> str:
    """The `## ANN index` section: facts, the method, the tables and the requirement's verdict."""
    rows, queries = out["rows"], out["queries"]
    auto = next(r for r in out["results"] if "(auto choice)" in r["config"])
    met = auto["recall_at_10"] >= TARGET_RECALL and auto["speedup_vs_exact"] >= TARGET_SPEEDUP
    table = markdown(out).split("\n")[2:]  # the tables and lines after markdown()'s one-line summary
    table = [line.replace(f"| {auto['config']} |", f"| **{auto['config']}** |") for line in table]
    lines = [
        facts_markdown(out["facts"]) + " Private embedded server under `benchmarks/.work/home`.",
        "",
        f"Command: `python benchmarks/index_bench.py --rows {rows} --dims {out['dims']} --queries {queries} "
        "--write` (defaults: `--rows 100000 --dims 768 --queries 200`).",
        "",
        f"Data: {rows:,} vectors of {out['dims']} dimensions shaped like real text embeddings (clustered in topics "
        "of Zipf-like sizes, a shared direction so unrelated vectors are alike, most variance in few directions, "
        "unit length; `mahavishnu_assets/index/synthetic.py`), loaded by binary COPY with one chunk row each "
        f"({out['load_seconds']} s). Queries: {queries} stored vectors moved by a random offset (cosine ~0.86 to "
        "their source), so no query is its own answer. Ground truth: exact top-10 with index scans off. Every "
        'row is one client, sequential, warm, on the same queries. "Ours" is the product\'s own path '
        "(`refresh_space`: choose, build `CONCURRENTLY` with sized `maintenance_work_mem`, measure against exact "
        "on its own sample queries, tune to 0.95 with 95% confidence); the recall shown is on the benchmark's "
        "queries, which the tuning never saw.",
        "",
        *table,
        "",
        f"Verdict: the requirement (recall@10 >= {TARGET_RECALL} at >= {TARGET_SPEEDUP}x exact QPS, both in one "
        f"run) is {'met' if met else 'NOT met'} by the configuration the product picks on its own at this size: "
        f"recall {auto['recall_at_10']:.3f} at {auto['speedup_vs_exact']}x {'✅' if met else '❌'}.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dims", type=int, default=768)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--write", action="store_true", help="write the results into benchmarks/RESULTS.md")
    args = parser.parse_args()
    facts = run_facts()
    result = asyncio.run(main(args.rows, args.dims, args.queries))
    result["facts"] = {**facts, "server": {"postgresql": result["postgres"], "pgvector": result["pgvector"]}}
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "index_bench.json").write_text(json.dumps(result, indent=2, default=str))
    print(markdown(result))
    if args.write:
        print(f"wrote {write_section(SECTION, section(result))}")
