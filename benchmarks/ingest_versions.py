"""First ingest of the same corpus by two or more versions of the code, alternating, in one run.

    python benchmarks/ingest_versions.py --corpus sqlalchemy django --rounds 4 \
        --side old=/path/to/old/.venv/bin/python --side new=.venv/bin/python [--write]

A side is NAME=PYTHON, or NAME=PYTHON@FOLDER to run a checkout's package from FOLDER (put first on
PYTHONPATH) with that interpreter's libraries. Every first ingest is the whole `mahavishnu ingest` command
into a database just created and migrated by the same side (`mahavishnu up`, untimed), against the
zero-cost embedding stub, on one embedded server; the database is dropped and the server checkpointed
afterwards, so no run pays for another's write-back. The order of the sides rotates every round, so each
side takes each position as often. Reported: the median whole-command wall and the median `seconds` the
ingest reports (its work in the process), per side and corpus, and each side's ratio to the first side.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest_bench import CORPORA, WORK, Stub, admin, base_env, fresh_database, prepare_corpus, quiesce
from results import facts_markdown, run_facts, write_section

SECTION = "First ingest across versions"
HOME = WORK / "versions-home"


def parse_side(text: str) -> tuple[str, str, str | None]:
    name, sep, rest = text.partition("=")
    if not sep or not name or not rest:
        raise argparse.ArgumentTypeError(f"a side is NAME=PYTHON or NAME=PYTHON@FOLDER, not {text!r}")
    python, _, folder = rest.partition("@")
    return name, python, folder or None


def first_ingest(
    side: tuple[str, str, str | None], repo: Path, stub: Stub, database: str
) -> tuple[float, float]:
    name, python, folder = side
    fresh_database(HOME, database)
    env = {k: v for k, v in base_env(HOME, database, stub).items() if k != "PYTHONPATH"}
    if folder:
        env["PYTHONPATH"] = folder
    command = [python, "-c", "from mahavishnu_assets.cli import run; run()"]
    # Run outside this checkout: `python -c` puts the working directory first on sys.path.
    subprocess.run([*command, "up"], env=env, check=True, capture_output=True, cwd=HOME)
    quiesce(HOME, database)
    started = time.perf_counter()
    done = subprocess.run(
        [*command, "ingest", str(repo), "--json"], env=env, capture_output=True, text=True, cwd=HOME
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{name}: ingest failed: {done.stdout[-1500:]}{done.stderr[-1500:]}")
    seconds = json.loads(done.stdout.strip().splitlines()[-1])["seconds"]
    asyncio.run(admin(HOME, [f'DROP DATABASE "{database}" WITH (FORCE)', "CHECKPOINT"]))
    return wall, seconds


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", choices=sorted(CORPORA), nargs="+", default=["sqlalchemy"])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--side", type=parse_side, action="append", required=True)
    parser.add_argument("--write", action="store_true", help="write the results into benchmarks/RESULTS.md")
    args = parser.parse_args()
    sides: list[tuple[str, str, str | None]] = args.side
    if len(sides) < 2 or len({s[0] for s in sides}) != len(sides):
        parser.error("give two or more sides with different names")
    facts = run_facts()
    HOME.mkdir(parents=True, exist_ok=True)
    stub = Stub("--zero-cost")
    runs: dict[tuple[str, str], list[tuple[float, float]]] = {}
    try:
        for corpus in args.corpus:
            repo = prepare_corpus(corpus)
            for i in range(args.rounds):
                for side in sides[i % len(sides) :] + sides[: i % len(sides)]:
                    wall, seconds = first_ingest(side, repo, stub, f"versions_{side[0]}")
                    runs.setdefault((corpus, side[0]), []).append((wall, seconds))
                    print(
                        f"{corpus} {side[0]} round {i + 1}: wall {wall:.2f} s, in process {seconds:.2f} s",
                        flush=True,
                    )
    finally:
        stub.stop()
    lines = [
        facts_markdown(facts),
        f"Command: `python benchmarks/ingest_versions.py {' '.join(sys.argv[1:])}`.",
        "",
        "| corpus | side | first ingest wall (median) | vs first side | in process (median) | vs first side | walls |",
        "|---|---|---|---|---|---|---|",
    ]
    for corpus in args.corpus:
        base_wall = statistics.median(w for w, _ in runs[(corpus, sides[0][0])])
        base_seconds = statistics.median(s for _, s in runs[(corpus, sides[0][0])])
        for name, _, _ in sides:
            walls = [w for w, _ in runs[(corpus, name)]]
            wall = statistics.median(walls)
            seconds = statistics.median(s for _, s in runs[(corpus, name)])
            lines.append(
                f"| {corpus} | {name} | {wall:.2f} s | {wall / base_wall:.3f}× | {seconds:.2f} s "
                f"| {seconds / base_seconds:.3f}× | {', '.join(f'{w:.2f}' for w in walls)} |"
            )
    text = "\n".join(lines)
    print(text)
    if args.write:
        print(f"wrote {write_section(SECTION, text)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
