"""MCP server load benchmark: concurrent tool calls from real MCP client sessions vs one process per search.

    python benchmarks/mcp_load.py [--sessions 50] [--calls 10] [--rounds 3] [--cli-searches 30] [--write]

Corpus: this repository's own work tree (git-aware discovery, so only its tracked and unignored files),
ingested by `mahavishnu ingest` into a fresh embedded PostgreSQL under benchmarks/.work/mcp-home, with the
embedding stub in its own process (zero compute cost, 768 dimensions). Then `mahavishnu serve --http` runs as
its own process (pool of 10, one embedder client), and this process opens `--sessions` sessions with the MCP
SDK's `Client` over streamable HTTP. Once every session is open, each fires `--calls` calls at once, so
sessions x calls calls are in flight together; latency is measured per call from that moment, throughput is
calls / wall time of the burst. Loads: `search_code` (hybrid, k=10) over varied queries; a `find_symbol` +
`recall` mix (half each; memories stored first). Peer in the same run: the same searches as one
`mahavishnu search --json` process each, `--cli-parallel` at a time. With --write the figures replace the
`## MCP server` section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest_bench import ROOT, WORK, Stub, base_env, commit, machine, mahavishnu
from results import write_section

SECTION = "MCP server"
HOME = WORK / "mcp-home"

QUERIES = [
    "apply pending migrations under an advisory lock",
    "embedding space dimensions probe",
    "retry ollama embed request with backoff",
    "hybrid search reciprocal rank fusion",
    "snapshot restore copy on write trigger",
    "read lines of a stored file",
    "bearer token constant time comparison",
    "pool recovers after the server restarts",
    "chunk text into whole lines with tree-sitter",
    "skip binary files and secrets during discovery",
    "ivfflat lists and hnsw ef_search tuning",
    "settings from environment variables and yaml files",
    "dagster asset checks blocking",
    "git ls-files discovery of a work tree",
    "COPY chunks into postgres in binary format",
    "parse HOST:PORT binding",
    "terminate idle connections maintenance",
    "search filters path prefix language repository",
    "memory store vector search cosine similarity",
    "the CLI prints one JSON object on the last line",
    "open_memory",
    "search_text",
    "ingest_repository",
    "SnapshotManager",
    "find_space",
]
SYMBOLS = [
    "open_memory",
    "Memory.search",
    "search_text",
    "ingest_repository",
    "SnapshotManager.create",
    "find_space",
    "Database.connection",
    "chunk_text",
    "make_embedder",
    "OllamaEmbedder.embed",
    "migrate_up",
    "check_path",
    "build_server",
    "parse_binding",
    "load_settings",
    "rrf",
]
NOTES = [
    "The ingest writer commits one file batch per transaction.",
    "Hybrid search fuses the vector and text rankings with reciprocal rank fusion.",
    "Snapshots share unchanged rows through version tables.",
    "The MCP server keeps one asyncpg pool for every session.",
    "Search results are ordered by score, then repo, path and start line.",
]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def figures(latencies: list[float], errors: int, wall: float) -> dict[str, Any]:
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    return {
        "calls": len(latencies),
        "errors": errors,
        "p50_ms": round(p50 * 1000, 1),
        "p99_ms": round(p99 * 1000, 1),
        "p99_over_p50": round(p99 / p50, 2) if p50 else None,
        "wall_s": round(wall, 3),
        "calls_per_s": round(len(latencies) / wall, 1),
    }


async def burst(url: str, plans: list[list[tuple[str, dict[str, Any]]]]) -> dict[str, Any]:
    """One session per plan; once all are open, every call of every plan at once."""
    from mcp import Client

    opened = 0
    go = asyncio.Event()
    all_open = asyncio.Event()
    latencies: list[float] = []
    failures: list[str] = []
    started = 0.0

    async def session(plan: list[tuple[str, dict[str, Any]]]) -> None:
        nonlocal opened
        async with Client(url) as client:
            opened += 1
            if opened == len(plans):
                all_open.set()
            await go.wait()

            async def one(name: str, arguments: dict[str, Any]) -> None:
                try:
                    result = await client.call_tool(name, arguments)
                    if result.is_error:
                        failures.append(str(result.content[0])[:200])
                except Exception as exc:  # a transport failure counts as an error, the run goes on
                    failures.append(f"{exc.__class__.__name__}: {exc}"[:200])
                latencies.append(time.perf_counter() - started)

            await asyncio.gather(*(one(name, arguments) for name, arguments in plan))

    tasks = [asyncio.create_task(session(plan)) for plan in plans]
    await all_open.wait()
    started = time.perf_counter()
    go.set()
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - started
    if failures:
        print(f"  {len(failures)} errors, e.g. {failures[0]}", file=sys.stderr)
    return figures(latencies, len(failures), wall)


async def seed_notes(url: str, count: int) -> None:
    from mcp import Client

    async with Client(url) as client:
        for i in range(count):
            note = f"{NOTES[i % len(NOTES)]} (note {i})"
            result = await client.call_tool(
                "remember", {"content": note, "tags": [f"t{i % 4}"], "agent": "bench"}
            )
            assert not result.is_error, result.content


def search_plans(sessions: int, calls: int) -> list[list[tuple[str, dict[str, Any]]]]:
    return [
        [("search_code", {"query": QUERIES[(s * calls + c) % len(QUERIES)], "k": 10}) for c in range(calls)]
        for s in range(sessions)
    ]


def mix_plans(sessions: int, calls: int) -> list[list[tuple[str, dict[str, Any]]]]:
    plans = []
    for s in range(sessions):
        plan: list[tuple[str, dict[str, Any]]] = []
        for c in range(calls):
            i = s * calls + c
            if i % 2:
                plan.append(("recall", {"query": QUERIES[i % len(QUERIES)], "k": 5}))
            else:
                plan.append(("find_symbol", {"name": SYMBOLS[i % len(SYMBOLS)]}))
        plans.append(plan)
    return plans


def cli_searches(env: dict[str, str], count: int, parallel: int) -> dict[str, Any]:
    """The same searches, one `mahavishnu search` process each, `parallel` at a time."""
    queries = [QUERIES[i % len(QUERIES)] for i in range(count)]
    started = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        walls = list(pool.map(lambda q: mahavishnu(["search", q, "--k", "10", "--json"], env)[0], queries))
    wall = time.perf_counter() - started
    out = figures(walls, 0, wall)
    out["parallel"] = parallel
    return out


def start_server(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    with log.open("wb") as err:
        process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from mahavishnu_assets.cli import run; run()",
                "serve",
                "--http",
                "127.0.0.1:0",
            ],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    for _ in range(1200):
        found = re.search(r"listening on (http://\S+/mcp)", log.read_text(errors="replace"))
        if found:
            return process, found.group(1)
        if process.poll() is not None:
            raise SystemExit(f"the server exited: {log.read_text()[-2000:]}")
        time.sleep(0.1)
    raise SystemExit("the server did not start")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--calls", type=int, default=10, help="calls per session, all at once")
    parser.add_argument("--rounds", type=int, default=3, help="bursts of each load (after one warm-up)")
    parser.add_argument("--cli-searches", type=int, default=30)
    parser.add_argument("--cli-parallel", type=int, default=2)
    parser.add_argument(
        "--acquire-timeout", type=float, default=120.0, help="the server's pool acquire timeout"
    )
    parser.add_argument("--write", action="store_true", help="write the results into benchmarks/RESULTS.md")
    args = parser.parse_args()

    load_before = os.getloadavg()
    shutil.rmtree(HOME, ignore_errors=True)
    (WORK / "no-settings").mkdir(parents=True, exist_ok=True)
    stub = Stub("--zero-cost")
    env = base_env(HOME, "mahavishnu", stub)
    env["MAHAVISHNU_POSTGRES__POOL_MAX_SIZE"] = "10"
    # A burst of sessions x calls queues for the pool: the last calls wait for the burst's whole wall time,
    # which on a busy machine passes the default 30 s acquire timeout (then they fail with pool_exhausted).
    env["MAHAVISHNU_POSTGRES__ACQUIRE_TIMEOUT_SECONDS"] = str(args.acquire_timeout)
    process = None
    try:
        _, up = mahavishnu(["up", "--json"], env)
        _, ingested = mahavishnu(["ingest", str(ROOT), "--name", "mahavishnu", "--json"], env)
        print(f"corpus: {ingested['files_seen']} files, {ingested['chunks_written']} chunks", file=sys.stderr)
        process, url = start_server(env, WORK / "mcp-serve.log")
        sessions, calls = args.sessions, args.calls
        asyncio.run(burst(url, search_plans(sessions, calls)))  # warm-up: plans cached, pool full
        searches = [asyncio.run(burst(url, search_plans(sessions, calls))) for _ in range(args.rounds)]
        for r in searches:
            print(f"search_code: {r}", file=sys.stderr)
        asyncio.run(seed_notes(url, 100))
        asyncio.run(burst(url, mix_plans(sessions, calls)))
        mixes = [asyncio.run(burst(url, mix_plans(sessions, calls))) for _ in range(args.rounds)]
        for r in mixes:
            print(f"find_symbol + recall: {r}", file=sys.stderr)
        cli = cli_searches(env, args.cli_searches, args.cli_parallel)
        print(f"mahavishnu search processes: {cli}", file=sys.stderr)
    finally:
        if process is not None:
            process.terminate()
            process.wait(30)
        stub.stop()
        subprocess.run([sys.executable, "-m", "mahavishnu_assets.cli", "down"], env=env, capture_output=True)
    report = {
        "sessions": sessions,
        "calls": calls,
        "acquire_timeout": args.acquire_timeout,
        "load": [round(load_before[1], 1), round(os.getloadavg()[1], 1)],
        "search": searches,
        "mix": mixes,
        "cli": cli,
        "corpus": {"files": ingested["files_seen"], "chunks": ingested["chunks_written"]},
        "up": up,
    }
    print(json.dumps(report, indent=2))
    if args.write:
        write(report, sys.argv[1:])
    return 0


def write(report: dict[str, Any], argv: list[str]) -> None:
    searches, mixes, cli = report["search"], report["mix"], report["cli"]
    best = statistics.median(r["calls_per_s"] for r in searches)
    ratio = best / cli["calls_per_s"]
    versions = ", ".join(
        f"{name} {importlib.metadata.version(name)}" for name in ("mcp", "uvicorn", "asyncpg", "httpx2")
    )
    up = report["up"]
    total = report["sessions"] * report["calls"]
    lines = [
        f"Date {date.today().isoformat()}; machine: {machine()}; {versions}; PostgreSQL {up['postgres_version']} "
        f"+ pgvector {up['pgvector_version']} (embedded); commit {commit()}. Other work shared the 2 cores during the "
        f"run (5-minute load average {report['load'][0]} at the start, {report['load'][1]} at the end), so "
        "absolute figures are pessimistic; the comparisons are within one run.",
        "",
        f"Command: `python benchmarks/mcp_load.py{' ' + ' '.join(argv) if argv else ''}`.",
        "",
        f"Corpus: this repository's work tree, {report['corpus']['files']} files, {report['corpus']['chunks']} "
        "chunks, embedded through the stub (768 dimensions, zero cost, its own process). The server is "
        "`mahavishnu serve --http 127.0.0.1:0` (one process, asyncpg pool of 10, one embedder client); the load "
        f"comes from {report['sessions']} MCP SDK `Client` sessions over streamable HTTP in one process, opened "
        f"first, then each firing {report['calls']} calls at once: {total} calls in flight together. Latency is "
        "per call from the start of the burst (queueing included); calls/s is calls / the burst's wall time. One "
        "warm-up burst precedes the measured ones. The server's pool acquire timeout is "
        f"{report['acquire_timeout']:g} s (MAHAVISHNU_POSTGRES__ACQUIRE_TIMEOUT_SECONDS; default 30 s): the last "
        "calls of a burst wait for a connection for about the burst's whole wall time. The peer runs the same searches as one `mahavishnu search "
        f"--json` process each, {cli['parallel']} at a time ({cli['calls']} searches; its latency is each "
        "process's wall time).",
        "",
        "| load | calls | errors | p50 ms | p99 ms | p99/p50 | calls/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(searches, 1):
        lines.append(
            f"| `search_code` (hybrid, k=10), burst {i} | {r['calls']} | {r['errors']} | {r['p50_ms']} | "
            f"{r['p99_ms']} | {r['p99_over_p50']} | {r['calls_per_s']} |"
        )
    for i, r in enumerate(mixes, 1):
        lines.append(
            f"| `find_symbol` + `recall` (half each), burst {i} | {r['calls']} | {r['errors']} | {r['p50_ms']} | "
            f"{r['p99_ms']} | {r['p99_over_p50']} | {r['calls_per_s']} |"
        )
    lines.append(
        f"| `mahavishnu search` process per search, {cli['parallel']} at a time | {cli['calls']} | 0 | "
        f"{cli['p50_ms']} | {cli['p99_ms']} | {cli['p99_over_p50']} | {cli['calls_per_s']} |"
    )
    errors = sum(r["errors"] for r in searches + mixes)
    worst = max(r["p99_over_p50"] for r in searches + mixes)
    lines += [
        "",
        "Notes: `find_symbol` answers from the symbols table (definitions extracted with tree-sitter at ingest). "
        "Concurrent queries share embedding requests "
        "(`search/query_embedder.py`); with the zero-cost stub the embedding requests cost little either way, "
        "so the figures are bound by the database work of the searches and by the machine's load.",
        "",
        f"Targets: zero errors ({errors}), p99 <= 5 x p50 (worst {worst}), `search_code` throughput >= 5 x the "
        f"process-per-search peer: median {best} calls/s vs {cli['calls_per_s']}, {ratio:.1f}x.",
        "",
    ]
    path = write_section(SECTION, "\n".join(lines))
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
