"""Every benchmark in one command: each in its own process with --write, then the header of RESULTS.md.

    python benchmarks/run_all.py [--only NAME ...] [--skip NAME ...] [--quick] [--list]

Each benchmark runs with the arguments of its reference figures and rewrites its own `## section` of
benchmarks/RESULTS.md; its output streams here, prefixed with its name. A benchmark that fails does not stop
the others; the command exits non-zero at the end and lists the failures. Then the part of RESULTS.md before
the first section is rewritten: the run's facts (date, machine, versions, commit) and a table of what ran,
its wall time and its status. A benchmark whose script is not in this checkout is left out and said so.

--quick runs each benchmark at smaller sizes, as a smoke test. Its figures never go into RESULTS.md: every
benchmark started by a quick run has BENCH_QUICK=1, under which `results.write_section` writes to
benchmarks/.work/RESULTS-quick.md (git-ignored) with each section marked as quick; a benchmark that writes
RESULTS.md by other means gets no --write in a quick run, and one without known quick sizes is left out.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import results

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / ".work"


@dataclass(frozen=True)
class Benchmark:
    name: str
    script: str  # under benchmarks/ (or an absolute path)
    section: str
    # The reference run's arguments (most benchmarks' own defaults are their reference).
    args: tuple[str, ...] = ()
    # Smaller sizes for --quick; None: no quick form known, so a quick run leaves it out.
    quick: tuple[str, ...] | None = None

    @property
    def path(self) -> Path:
        return HERE / self.script

    @property
    def present(self) -> bool:
        return self.path.is_file()

    @property
    def shared_writer(self) -> bool:
        """Whether its --write goes through results.write_section, which keeps a quick run out of RESULTS.md."""
        return self.present and "write_section(" in self.path.read_text(encoding="utf-8")

    def command(self, quick: bool) -> list[str]:
        args = self.quick if quick and self.quick is not None else self.args
        write = ["--write"] if not quick or self.shared_writer else []
        return [sys.executable, str(self.path), *args, *write]


BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark("load", "load_bench.py", "Pool load", quick=("--rows", "2000", "--queries", "50")),
    Benchmark("snapshot", "snapshot_bench.py", "Snapshots", quick=("--chunks", "4000", "--memories", "100")),
    Benchmark("index", "index_bench.py", "ANN index", quick=("--rows", "10000", "--queries", "50")),
    Benchmark(
        "index-recall",
        "index_recall.py",
        "Honest recall",
        quick=("--corpus", "stdlib", "--queries", "50", "--seeds", "1"),
    ),
    Benchmark(
        "embed-decode",
        "embed_decode_bench.py",
        "Embedding client",
        quick=("--batches", "20", "--rounds", "2"),
    ),
    Benchmark(
        "ingest",
        "ingest_bench.py",
        "Ingestion",
        args=("--corpus", "sqlalchemy", "django", "--repeats", "7", "--first-repeats", "5"),
        quick=("--corpus", "flask", "--first-repeats", "1", "--repeats", "2", "--slow-delay", "0.0002"),
    ),
    Benchmark(
        "search-quality",
        "search_quality.py",
        "Search quality",
        quick=("--corpus", "click", "--max-queries", "30"),
    ),
    Benchmark("embed-servers", "embed_servers.py", "Embedding servers"),
    Benchmark(
        "mcp-load",
        "mcp_load.py",
        "MCP server",
        quick=("--sessions", "5", "--calls", "2", "--rounds", "1", "--cli-searches", "4"),
    ),
)


class SelectionError(ValueError):
    """An --only or --skip name that names no benchmark, or one not in this checkout."""


def select(
    only: list[str] | None,
    skip: list[str] | None,
    quick: bool = False,
    benchmarks: tuple[Benchmark, ...] = BENCHMARKS,
) -> tuple[list[Benchmark], list[tuple[Benchmark, str]]]:
    """The benchmarks to run, in their fixed order, and those left out with the reason."""
    known = {b.name for b in benchmarks}
    unknown = sorted(set(only or []).union(skip or []) - known)
    if unknown:
        raise SelectionError(
            f"unknown benchmark {', '.join(unknown)}; known: {', '.join(b.name for b in benchmarks)}"
        )
    missing = [b.name for b in benchmarks if only and b.name in only and not b.present]
    if missing:
        raise SelectionError(f"{', '.join(missing)}: the script is not in this checkout")
    chosen: list[Benchmark] = []
    left: list[tuple[Benchmark, str]] = []
    for b in benchmarks:
        if only and b.name not in only:
            left.append((b, "not in --only"))
        elif skip and b.name in skip:
            left.append((b, "--skip"))
        elif not b.present:
            left.append((b, f"{b.script} is not in this checkout"))
        elif quick and b.quick is None:
            left.append((b, "no quick sizes known"))
        else:
            chosen.append(b)
    return chosen, left


@dataclass
class Outcome:
    benchmark: Benchmark
    seconds: float
    returncode: int
    tail: list[str]

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def run_one(b: Benchmark, quick: bool, position: str) -> Outcome:
    """Run one benchmark in its own process, streaming its output line by line with its name in front."""
    command = b.command(quick)
    env = {k: v for k, v in os.environ.items() if k != results.QUICK_ENV}
    env["PYTHONUNBUFFERED"] = "1"
    if quick:
        env[results.QUICK_ENV] = "1"
    script = b.path.relative_to(ROOT) if b.path.is_relative_to(ROOT) else b.path
    shown = " ".join(["python", str(script), *command[2:]])
    print(f"==> {position} {b.name}: {shown}", flush=True)
    tail: collections.deque[str] = collections.deque(maxlen=30)
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        bufsize=1,
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:
            sys.stdout.write(f"[{b.name}] {line}")
            sys.stdout.flush()
            tail.append(line.rstrip("\n"))
        returncode = process.wait()
    finally:
        if process.poll() is None:  # interrupted: do not leave the benchmark running on its own
            process.terminate()
            process.wait(30)
    seconds = time.perf_counter() - started
    state = "ok" if returncode == 0 else f"FAILED (exit {returncode})"
    print(f"<== {b.name}: {state} in {duration(seconds)}", flush=True)
    return Outcome(b, seconds, returncode, list(tail))


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s"


async def embedded_versions() -> dict[str, str]:
    """PostgreSQL's and pgvector's versions from the benchmarks' shared embedded server (benchmarks/.work/home),
    started if it is not running: the same binaries every benchmark's server runs."""
    from mahavishnu_assets.database.pool import connect
    from mahavishnu_assets.database.server import embedded_server
    from mahavishnu_assets.settings import Settings

    server = embedded_server(Settings(home=WORK / "home"))
    conn = await connect((await asyncio.to_thread(server.start)).with_database("postgres"))
    try:
        return await results.server_versions(conn)
    finally:
        await conn.close()


def header(
    facts: dict[str, Any],
    argv: list[str],
    outcomes: list[Outcome],
    left: list[tuple[Benchmark, str]],
    quick: bool,
) -> str:
    """The preamble of RESULTS.md: what the file is, then this run's facts and one row per benchmark."""
    command = " ".join(["python benchmarks/run_all.py", *argv])
    total = sum(o.seconds for o in outcomes)
    lines = [
        results.TITLE + (" (quick smoke runs)" if quick else ""),
        "",
        "Each section is owned by the part of the project it measures; the command that produced it is given in "
        "it. `python benchmarks/run_all.py` runs every benchmark, each rewriting its own section, then rewrites "
        "this header.",
        "",
    ]
    if quick:
        lines += [results.QUICK_NOTE, ""]
    lines += [
        f"Last run: `{command}`, {duration(total)} in all. {results.facts_markdown(facts)}",
        "",
        "| benchmark | section | wall | status |",
        "|---|---|---|---|",
    ]
    for o in outcomes:
        status = "✅ ok" if o.ok else f"❌ failed (exit {o.returncode})"
        lines.append(
            f"| {o.benchmark.name} (`{o.benchmark.script}`) | {o.benchmark.section} | {duration(o.seconds)} | {status} |"
        )
    for b, why in left:
        lines.append(f"| {b.name} (`{b.script}`) | {b.section} | | not run: {why} |")
    return "\n".join(lines)


def listing(quick: bool) -> str:
    rows = []
    for b in BENCHMARKS:
        state = "present" if b.present else "not in this checkout"
        shown = (
            " ".join(b.command(quick)[2:])
            if not quick or b.quick is not None
            else "(no quick sizes: left out)"
        )
        rows.append(f"{b.name:15s} {b.script:22s} {state:21s} ## {b.section:18s} {shown}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    names = [b.name for b in BENCHMARKS]
    parser.add_argument("--only", nargs="+", metavar="NAME", help=f"run only these ({', '.join(names)})")
    parser.add_argument("--skip", nargs="+", metavar="NAME", help="run all but these")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, figures kept out of RESULTS.md")
    parser.add_argument(
        "--list", action="store_true", help="show the benchmarks and their commands, run nothing"
    )
    args = parser.parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    if args.list:
        print(listing(args.quick))
        return 0
    try:
        chosen, left = select(args.only, args.skip, args.quick, BENCHMARKS)
    except SelectionError as exc:
        parser.error(str(exc))
    if not chosen:
        parser.error("nothing to run")
    for b, why in left:
        print(f"--- {b.name}: not run ({why})", flush=True)
    facts = results.run_facts()
    outcomes = [run_one(b, args.quick, f"[{i}/{len(chosen)}]") for i, b in enumerate(chosen, 1)]
    try:
        facts["server"] = asyncio.run(embedded_versions())
    except Exception as exc:  # the header still says everything else; the sections name their servers
        print(f"--- PostgreSQL version not read: {type(exc).__name__}: {exc}", flush=True)
    # The header goes where the sections went.
    target = results.QUICK_RESULTS if args.quick else results.RESULTS
    path = results.write_preamble(header(facts, argv, outcomes, left, args.quick), target)
    print(f"wrote the header of {path}", flush=True)
    failed = [o for o in outcomes if not o.ok]
    for o in failed:
        print(f"\nFAILED {o.benchmark.name} (exit {o.returncode}); its last lines:", flush=True)
        print("\n".join(f"    {line}" for line in o.tail), flush=True)
    if failed:
        print(f"\n{len(failed)} of {len(outcomes)} failed: {', '.join(o.benchmark.name for o in failed)}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
