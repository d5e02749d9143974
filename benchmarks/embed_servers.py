"""Embedding servers benchmark: a first ingest against 1, 2 and 4 slow servers, and against a failing one.

    python benchmarks/embed_servers.py [--corpus sqlalchemy] [--delay 0.001] [--servers 1 2 4] [--repeats 1] [--write]

Each server is `mahavishnu_assets.testing.ollama_stub` in its own process, computing one request at a time at
`--delay` seconds per text (a GPU box: `--parallel 1 --delay-per-text`), with precomputed vectors so its own CPU
stays small. The whole `mahavishnu ingest` command runs with OLLAMA_HOST naming the servers, into a database
just created, on the corpus `ingest_bench.py` prepares (a project's sdist, `git init`ed). Measured:

1. for 1, 2 and 4 servers: the command's wall vs the busiest server's busy time (target <= 1.15x), hence the
   speed-up over one server (targets: 2 servers >= 1.8x, 4 >= 3.4x); the CPU seconds of our processes,
   PostgreSQL and the stubs, whose sum over the cores is the wall's physical floor on this machine;
2. one server answering HTTP 503 to every 3rd request: the wall vs the clean one-server run's (target <= 1.5x),
   and that the same chunks and embeddings were stored.
With --write the figures replace the `## Embedding servers` section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import threading
import time
import urllib.request
from importlib.metadata import version
from pathlib import Path
from typing import Any

from ingest_bench import (
    CORPORA,
    RESULTS,
    WORK,
    Stub,
    base_env,
    commit,
    compile_package,
    fresh_database,
    machine,
    machine_times,
    mahavishnu,
    mahavishnu_up,
    prepare_corpus,
    query,
    quiesce,
)

SECTION = "## Embedding servers"
DATABASE = "bench_servers"


def configure(stub: Stub, **changes: Any) -> None:
    request = urllib.request.Request(
        f"{stub.url}/_stub/config",
        data=json.dumps(changes).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    urllib.request.urlopen(request, timeout=10).read()


class OwnCpu:
    """CPU seconds of this benchmark's own processes while a timing runs: the ingest command and every process
    it started (its reader workers hang off a forkserver, so they are found by ancestry, not by waiting), our
    PostgreSQL (its postmaster and every process it started) and our stubs. Sampled every 0.2 s, since backends
    and workers exit before the timing ends. The machine is shared: everything else is excluded."""

    def __init__(self, home: Path, stubs: list[Stub]) -> None:
        self.tick = os.sysconf("SC_CLK_TCK")
        self.me = os.getpid()
        self.postmaster = int((home / "pgdata" / "postmaster.pid").read_text().split()[0])
        self.stubs = {s.process.pid for s in stubs}
        self.kinds: dict[int, str] = {}
        self.before = self._sample()
        self.last = dict(self.before)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self) -> dict[int, float]:
        stats: dict[int, tuple[int, float]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / self.tick)
        out: dict[int, float] = {}
        for pid, (ppid, cpu) in stats.items():
            kind = self.kinds.get(pid)
            if kind is None:
                if pid in self.stubs:
                    kind = "stub"
                elif self.postmaster in (pid, ppid):
                    kind = "postgres"
                else:
                    # A descendant of this benchmark (the command, its forkserver, its workers).
                    seen, parent = 0, ppid
                    while parent > 1 and parent != self.me and seen < 64:
                        parent, seen = stats.get(parent, (0, 0.0))[0], seen + 1
                    kind = "ours" if parent == self.me and pid != self.me else None
                if kind is None:
                    continue
                self.kinds[pid] = kind
            out[pid] = cpu
        return out

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.last.update(self._sample())

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        self.last.update(self._sample())
        spent = {"ours": 0.0, "postgres": 0.0, "stub": 0.0}
        for pid, cpu in self.last.items():
            spent[self.kinds[pid]] += cpu - self.before.get(pid, 0.0)
        return {k: round(v, 2) for k, v in spent.items()}


def stored(home: Path) -> tuple[int, int]:
    """Chunks and embeddings in the benchmark's database."""
    (row,) = query(
        home,
        DATABASE,
        "SELECT (SELECT count(*) FROM mahavishnu.chunks), (SELECT count(*) FROM mahavishnu.embeddings)",
    )
    return int(row[0]), int(row[1])


def one_run(home: Path, repo: Path, servers: int, delay: float, fail_every: int = 0) -> dict[str, Any]:
    """A first ingest against `servers` fresh stubs (the first failing every `fail_every`-th request)."""
    stubs = [Stub("--zero-cost", "--delay-per-text", str(delay), "--parallel", "1") for _ in range(servers)]
    try:
        if fail_every:
            configure(stubs[0], fail_every=fail_every)
        fresh_database(home, DATABASE)
        env = base_env(home, DATABASE, stubs[0])
        env["OLLAMA_HOST"] = ",".join(s.url for s in stubs)
        mahavishnu_up(env)
        quiesce(home, DATABASE)
        for stub in stubs:
            stub.reset()
        meter = OwnCpu(home, stubs)
        machine_before = machine_times()
        began = time.time()
        wall, result = mahavishnu(["ingest", str(repo), "--json"], env)
        ended = time.time()
        machine_after = machine_times()
        cpu = meter.stop()
        stats = [s.stats() for s in stubs]
        chunks, embeddings = stored(home)
    finally:
        for stub in stubs:
            stub.stop()
    busy = [s["busy_seconds"] for s in stats]
    busiest = max(busy)
    firsts = [s["first_request_at"] for s in stats if s["first_request_at"]]
    lasts = [s["last_response_at"] for s in stats if s["last_response_at"]]
    return {
        "servers": servers,
        "fail_every": fail_every,
        "wall": wall,
        "seconds_in_process": result["seconds"],
        "busy": busy,
        "busiest": busiest,
        "ratio": wall / busiest,
        "ratio_in_process": result["seconds"] / busiest,
        "texts": [s["texts"] for s in stats],
        "requests": [s["embed_requests"] for s in stats],
        "failures": [s["failures"] for s in stats],
        "embeddings_computed": result["embeddings_computed"],
        "chunks": chunks,
        "embeddings": embeddings,
        "before_first_request": min(firsts) - began if firsts else 0.0,
        "after_last_answer": ended - max(lasts) if lasts else 0.0,
        "cpu": cpu,
        "cpu_total": sum(cpu.values()),
        "floor": sum(cpu.values()) / 2,
        "machine_busy": machine_after[1] - machine_before[1],
        "stolen": machine_after[2] - machine_before[2],
    }


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    walls = sorted(r["wall"] for r in runs)
    middle = walls[(len(walls) - 1) // 2]
    chosen = next(r for r in runs if r["wall"] == middle)
    return {**chosen, "walls": [r["wall"] for r in runs], "wall_median": statistics.median(walls)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", choices=sorted(CORPORA), default="sqlalchemy")
    parser.add_argument("--delay", type=float, default=0.001, help="seconds of server time per text")
    parser.add_argument("--servers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--repeats", type=int, default=1, help="runs of each configuration (median)")
    parser.add_argument("--fail-every", type=int, default=3, help="the failing server's N (0: skip)")
    parser.add_argument("--write", action="store_true", help="write the results into benchmarks/RESULTS.md")
    parser.add_argument(
        "--report-only", action="store_true", help="report the last run's figures (.work/embed_servers.json)"
    )
    args = parser.parse_args()
    if args.report_only:
        saved = json.loads((WORK / "embed_servers.json").read_text())
        print("\n".join(table(saved, args)))
        if args.write:
            write_results(saved, args, date=saved.get("date"), code=saved.get("commit"))
        return 0
    compile_package()
    home = WORK / "home"
    repo = prepare_corpus(args.corpus)
    runs: dict[str, dict[str, Any]] = {}
    plan = [(n, 0) for n in args.servers] + ([(1, args.fail_every)] if args.fail_every else [])
    done: dict[str, list[dict[str, Any]]] = {}
    # Configurations alternate within each round, so a busy phase of the machine hits all of them.
    for round_ in range(args.repeats):
        for servers, fail_every in plan:
            name = f"{servers}" + (f"-fail{fail_every}" if fail_every else "")
            run = one_run(home, repo, servers, args.delay, fail_every)
            done.setdefault(name, []).append(run)
            print(
                f"round {round_ + 1} {name}: wall {run['wall']:.2f}s, busiest server {run['busiest']:.2f}s "
                f"({run['ratio']:.3f}x), busy {[round(b, 1) for b in run['busy']]}, CPU {run['cpu']} "
                f"(floor {run['floor']:.1f}s), machine busy {run['machine_busy']:.1f} CPU-s",
                flush=True,
            )
    for name, results in done.items():
        runs[name] = median_run(results)
    figures = {
        "corpus": CORPORA[args.corpus],
        "delay": args.delay,
        "repeats": args.repeats,
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
        "commit": commit(),
        "runs": runs,
    }
    (WORK / "embed_servers.json").write_text(json.dumps(figures, indent=1))
    for line in table(figures, args):
        print(line)
    if args.write:
        write_results(figures, args)
    return 0


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def table(f: dict[str, Any], args: argparse.Namespace) -> list[str]:
    runs = f["runs"]
    one = runs.get("1")
    lines = [
        "| measurement | wall (command) | busiest server's busy time | wall / busy | speed-up vs 1 | target | "
        "result |",
        "|---|---|---|---|---|---|---|",
    ]
    targets = {1: 1.0, 2: 1.8, 4: 3.4}
    for n in args.servers:
        r = runs[str(n)]
        speedup = one["wall_median"] / r["wall_median"] if one else float("nan")
        ok_ratio = r["wall_median"] / r["busiest"] <= 1.15
        need = targets.get(n)
        ok_speed = need is None or speedup >= need
        target = "≤ 1.15×" + (f", ≥ {need}× faster" if n > 1 and need else "")
        lines.append(
            f"| {n} server{'s' if n > 1 else ''} ({sum(r['texts'])} texts: "
            f"{' + '.join(str(t) for t in r['texts'])}) | {r['wall_median']:.1f} s | {r['busiest']:.1f} s | "
            f"{r['wall_median'] / r['busiest']:.3f}× | {speedup:.2f}× | {target} | "
            f"{'✅' if ok_ratio and ok_speed else '❌'} |"
        )
    fail = next((r for k, r in runs.items() if "fail" in k), None)
    if fail and one:
        slower = fail["wall_median"] / one["wall_median"]
        lines.append(
            f"| 1 server failing every {ordinal(fail['fail_every'])} request ({sum(fail['failures'])} of "
            f"{sum(fail['requests'])} requests failed) | {fail['wall_median']:.1f} s | {fail['busiest']:.1f} s | "
            f"{fail['wall_median'] / fail['busiest']:.3f}× | {slower:.2f}× the clean run's wall | ≤ 1.5× | "
            f"{'✅' if slower <= 1.5 else '❌'} |"
        )
    most = runs[str(max(args.servers))]
    fixed = most["before_first_request"] + most["after_last_answer"]
    bound = max(most["busiest"], most["floor"]) + fixed
    lines.append("")
    lines.append(
        f"With {most['servers']} servers the busiest one works {most['busiest']:.1f} s, our own processes need "
        f"{most['cpu_total']:.1f} CPU-s (a floor of {most['floor']:.1f} s on 2 cores) and the servers wait "
        f"{fixed:.1f} s in all for the command to start and to finish (before the first request, after the last "
        f"answer): even alone on this machine the wall could not go below about {bound:.1f} s "
        f"({bound / most['busiest']:.2f}× the busiest server's time). Beyond that, the machine is shared: the "
        "CPU seconds other work took during each timing are listed below."
    )
    lines.append("")
    lines.append(
        "CPU seconds of each timed ingest (the command with its reader processes / its PostgreSQL / the stubs; "
        "on 2 cores their sum / 2 is the wall's floor), and the CPU seconds other work took on the shared machine "
        "meanwhile:"
    )
    lines.append("")
    for name, r in runs.items():
        cpu = r["cpu"]
        lines.append(
            f"- {name}: {cpu['ours']:.1f} / {cpu['postgres']:.1f} / {cpu['stub']:.1f} CPU-s, floor "
            f"{r['floor']:.1f} s vs wall {r['wall']:.1f} s; other work on the machine meanwhile "
            f"{max(0.0, r['machine_busy'] - r['cpu_total']):.1f} CPU-s (machine "
            f"{r['machine_busy'] / r['wall'] / 2:.0%} busy), stolen {r['stolen']:.1f} s; in-process "
            f"{r['seconds_in_process']:.1f} s; servers idle {r['before_first_request']:.1f} s before the first "
            f"request, {r['after_last_answer']:.1f} s after the last answer; stored {r['chunks']} chunks, "
            f"{r['embeddings']} embeddings; walls {', '.join(f'{w:.1f}' for w in r['walls'])} s"
        )
    return lines


def write_results(
    f: dict[str, Any], args: argparse.Namespace, *, date: str | None = None, code: str | None = None
) -> None:
    servers = " ".join(str(n) for n in args.servers)
    lines = [
        SECTION,
        "",
        f"Date: {date or time.strftime('%Y-%m-%d')}. Machine: {f['machine']}. Versions: ollama "
        f"{version('ollama')}, httpx {version('httpx')}, PostgreSQL 18 + pgvector (embedded). Code: commit "
        f"{code or commit()}. Command: "
        f"`python benchmarks/embed_servers.py --corpus {args.corpus} --delay {args.delay} --servers {servers} "
        f"--repeats {args.repeats} --fail-every {args.fail_every} --write`.",
        f"Corpus: {f['corpus']} (sdist, `git init`ed), a first ingest into a database just created, the whole "
        f"`mahavishnu ingest` command timed. Each server: `ollama_stub` in its own process, one request at a time "
        f"at {1000 * f['delay']:.1f} ms per text (precomputed vectors), all named in OLLAMA_HOST.",
        "",
        *table(f, args),
        "",
    ]
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    section = "\n".join(lines)
    text = pattern.sub(section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    RESULTS.write_text(text)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    raise SystemExit(main())
