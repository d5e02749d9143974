"""Client-side cost of an /api/embed answer: the plain official client against ours (orjson in a transport).

    python benchmarks/embed_decode_bench.py [--batches 200] [--rounds 5] [--dimensions 768] [--write]

Both clients ask the same stub (mahavishnu_assets.testing.ollama_stub, zero compute cost, in its own process)
for batches of 64 code-like texts and pass every answer through the embedder's own check (`_check_vectors`),
as an ingest does. Reported: this process's CPU milliseconds and wall milliseconds per batch, median of the
rounds, the clients alternating so a busy phase of the machine hits both. With --write the figures replace the
`## Embedding client` section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import ollama
from results import facts_markdown, run_facts, write_section

from mahavishnu_assets.ingest.embed import _check_vectors
from mahavishnu_assets.ingest.ollama_client import make_client

SECTION = "Embedding client"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def timed(client: Any, batches: int, texts: list[str], dimensions: int) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(batches):
        answer = await client.embed(model="nomic-embed-text", input=texts, truncate=True)
        _check_vectors(answer.embeddings, len(texts), dimensions, "stub")
    return time.perf_counter() - wall, time.process_time() - cpu


async def measure(url: str, args: argparse.Namespace) -> dict[str, tuple[float, float]]:
    texts = [f"def function_{i}(value):\n    return value * {i}\n" * 8 for i in range(64)]
    clients: dict[str, Callable[[], Any]] = {
        "plain ollama.AsyncClient": lambda: ollama.AsyncClient(host=url, timeout=60),
        "ours: orjson transport": lambda: make_client(url, 60),
    }
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in clients}
    for _ in range(args.rounds):
        for name, make in clients.items():
            client = make()
            try:
                await timed(client, 5, texts, args.dimensions)  # warm: connection, imports
                runs[name].append(await timed(client, args.batches, texts, args.dimensions))
            finally:
                await client.close()
    return {
        name: (
            statistics.median(c for _, c in r) / args.batches * 1000,
            statistics.median(w for w, _ in r) / args.batches * 1000,
        )
        for name, r in runs.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dimensions", type=int, default=768)
    parser.add_argument("--write", action="store_true", help="write the results into benchmarks/RESULTS.md")
    args = parser.parse_args()
    facts = run_facts()
    port = free_port()
    stub = subprocess.Popen(
        [sys.executable, "-m", "mahavishnu_assets.testing.ollama_stub", "--port", str(port)]
        + ["--zero-cost", "--dimensions", str(args.dimensions)],
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"{url}/api/version", timeout=1).read()
                break
            except OSError:
                time.sleep(0.05)
        figures = asyncio.run(measure(url, args))
    finally:
        stub.terminate()
        stub.wait(10)
    print(
        f"batches of 64 texts, {args.dimensions} dimensions; median of {args.rounds} rounds of {args.batches}"
    )
    for name, (cpu, wall) in figures.items():
        print(f"{name:28s} client CPU {cpu:6.2f} ms/batch   wall {wall:6.2f} ms/batch")
    if args.write:
        print(f"wrote {write_section(SECTION, markdown(figures, facts, args))}")
    return 0


def markdown(figures: dict[str, tuple[float, float]], facts: dict[str, Any], args: argparse.Namespace) -> str:
    """The `## Embedding client` section: facts, the method and one row per client."""
    (plain_cpu, plain_wall), (ours_cpu, ours_wall) = figures.values()
    lines = [
        facts_markdown(facts),
        "",
        f"Command: `python benchmarks/embed_decode_bench.py --batches {args.batches} --rounds {args.rounds} "
        f"--dimensions {args.dimensions} --write` (defaults: `--batches 200 --rounds 5 --dimensions 768`).",
        "",
        "Client-side cost of an `/api/embed` answer. Both clients ask the same stub "
        "(`mahavishnu_assets.testing.ollama_stub`, zero compute cost, in its own process) for batches of 64 "
        f"code-like texts of {args.dimensions} dimensions and pass every answer through the embedder's own "
        "check, as an ingest does. Per batch: this process's CPU and wall milliseconds, median of "
        f"{args.rounds} rounds of {args.batches} batches, the clients alternating so a busy phase of the "
        "machine hits both.",
        "",
        "| client | client CPU ms/batch | wall ms/batch |",
        "|---|---|---|",
        *(f"| {name} | {cpu:.2f} | {wall:.2f} |" for name, (cpu, wall) in figures.items()),
        "",
        f"The plain client spends {plain_cpu / ours_cpu:.2f}x our CPU and {plain_wall / ours_wall:.2f}x our wall "
        "per batch.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
