"""Lexical search benchmark: BM25 text ranking against the ts_rank ranking it replaced, on django.

    python benchmarks/lexical_bench.py [--rounds 3] [--rechunk] [--quality] [--write]

1. First ingest of django (the whole `mahavishnu ingest` command, stub embedder as in ingest_bench.py) with
   and without migration 0042 (the statistics triggers), alternating, into databases just created: wall time
   and the CPU seconds of the embedded PostgreSQL (its processes and every backend it reaped).
   With --rechunk, also a re-ingest that rewrites every file (the chunk size changed, as a chunker version
   bump does): the worst case for the triggers, which see every old chunk deleted and every new one loaded.
2. Latency of the text statement (text mode, k=10, and the depth hybrid search asks of it, k=40) for 50 queries
   drawn from django's own source: 25 first sentences of docstrings, 15 function or class names, 10
   `Class.method` names; each query runs 5 times alternating with the ts_rank statement, median per query.
3. With --quality: known-item retrieval in text mode on a copy of django with every docstring blanked (lines
   kept): a docstring's first sentence should find its function (200 queries), a name defined once its
   definition (150); a hit overlaps the target's lines by at least half of the smaller of the two.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import json
import os
import random
import shutil
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ingest_bench as bench

from mahavishnu_assets.search.filters import SearchFilters
from mahavishnu_assets.search.sql import RESULT_COLUMNS, TIE_ORDER, Statement, text_statement

SECTION = "## Lexical search"
HOME = bench.WORK / "home"
# The statement this change replaced (ts_rank over the same column and index), for the side-by-side.
PREVIOUS_SQL = f"""WITH q AS MATERIALIZED (
SELECT phraseto_tsquery('english', w) AS phrase_q, plainto_tsquery('english', w) AS all_q,
       replace(plainto_tsquery('english', w)::text, ' & ', ' | ')::tsquery AS any_q
  FROM (SELECT mahavishnu.code_words($1) AS w) words)
SELECT {RESULT_COLUMNS},
       (2 * (c.search_terms @@ q.phrase_q)::int + (c.search_terms @@ q.all_q)::int
        + ts_rank(c.search_terms, q.any_q))::float8 AS score
  FROM q
  JOIN mahavishnu.chunks c ON c.search_terms @@ q.any_q
  JOIN mahavishnu.repositories r ON r.id = c.repo_id
 ORDER BY score DESC, {TIE_ORDER}
 LIMIT $2"""  # noqa: S608 - constants only


def previous_statement(text: str, k: int) -> Statement:
    return Statement(PREVIOUS_SQL, (text, k))


def bm25_statement(text: str, k: int) -> Statement:
    return text_statement(text, k, SearchFilters(), None)


def server_cpu() -> float:
    """CPU seconds of the embedded server so far: the postmaster, the children it reaped, the live ones."""
    postmaster = int((HOME / "pgdata" / "postmaster.pid").read_text().split()[0])
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry) == postmaster:
            total += sum(int(x) for x in fields[11:15]) / tick
        elif int(fields[1]) == postmaster:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def without_0042() -> Path:
    folder = bench.WORK / "migrations-without-0042"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(bench.ROOT / "migrations", folder)
    for path in folder.glob("0042_*"):
        path.unlink()
    return folder


def ingests(repo: Path, rounds: int, *, rechunk: bool) -> dict[str, list[dict[str, float]]]:
    """Timed ingests with and without migration 0042, alternating: first ingests, or (rechunk) re-ingests of
    every file after an untimed first ingest."""
    without = without_0042()
    runs: dict[str, list[dict[str, float]]] = {"without": [], "with": []}
    stub = bench.Stub("--zero-cost")
    try:
        for i in range(rounds):
            for side in ("without", "with") if i % 2 == 0 else ("with", "without"):
                database = f"lexical_{'rechunk_' if rechunk else ''}{side}"
                bench.fresh_database(HOME, database)
                env = bench.base_env(HOME, database, stub)
                if side == "without":
                    env["MAHAVISHNU_MIGRATIONS_DIR"] = str(without)
                bench.mahavishnu_up(env)
                if rechunk:
                    bench.mahavishnu(["ingest", str(repo), "--json"], env)
                    env["MAHAVISHNU_INGEST__MAX_CHUNK_CHARS"] = "1200"
                stub.reset()
                bench.quiesce(HOME, database)
                cpu = server_cpu()
                wall, result = bench.mahavishnu(["ingest", str(repo), "--json"], env)
                runs[side].append(
                    {
                        "wall": wall,
                        "pg_cpu": server_cpu() - cpu,
                        "written": result["chunks_written"],
                        "deleted": result["chunks_deleted"],
                    }
                )
                what = "re-chunk" if rechunk else "first ingest"
                print(f"{what} {side} 0042: {wall:.2f} s, PostgreSQL {runs[side][-1]['pg_cpu']:.2f} CPU-s")
    finally:
        stub.stop()
    return runs


def definitions(root: Path, *, blank: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """(docstring items, uniquely named definitions, qualified method names) of the .py files under root;
    with `blank`, docstrings are replaced by empty lines in place."""
    docs: list[dict[str, Any]] = []
    defs: list[dict[str, Any]] = []
    qualified: list[str] = []
    names: Counter[str] = Counter()
    for path in sorted(root.rglob("*.py")):
        rel = str(path.relative_to(root))
        try:
            text = path.read_text(encoding="utf-8")
            tree = ast.parse(text)
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        lines = text.split("\n")
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                qualified += [f"{node.name}.{f.name}" for f in node.body if isinstance(f, ast.FunctionDef)]
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                continue
            names[node.name] += 1
            item = {"path": rel, "start": node.lineno, "end": node.end_lineno}
            defs.append({"q": node.name, **item})
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                if isinstance(first.value.value, str):
                    sentence = " ".join(first.value.value.strip().split("\n\n")[0].split()).split(". ")[0]
                    if 4 <= len(sentence.split()) <= 25:
                        docs.append({"q": sentence, **item})
                    if blank:
                        for i in range(first.lineno - 1, first.end_lineno or first.lineno):
                            lines[i] = ""
        if blank:
            path.write_text("\n".join(lines), encoding="utf-8")
    unique = [d for d in defs if names[d["q"]] == 1 and len(d["q"]) >= 6]
    return docs, unique, qualified


def latency_queries(repo: Path) -> list[str]:
    docs, unique, qualified = definitions(repo / "django", blank=False)
    rng = random.Random(16)
    return (
        rng.sample(sorted({d["q"] for d in docs}), 25)
        + rng.sample(sorted({d["q"] for d in unique if not d["q"].startswith("_")}), 15)
        + rng.sample(sorted(set(qualified)), 10)
    )


async def latencies(database: str, queries: list[str], k: int) -> dict[str, list[float]]:
    conn = await bench_connect(database)
    out: dict[str, list[float]] = {"ts_rank": [], "bm25": []}
    try:
        for query in queries:
            times: dict[str, list[float]] = {"ts_rank": [], "bm25": []}
            for _ in range(5):
                for name, build in (("ts_rank", previous_statement), ("bm25", bm25_statement)):
                    statement = build(query, k)
                    async with conn.transaction(isolation="repeatable_read", readonly=True):
                        await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
                        began = time.perf_counter()
                        await conn.fetch(statement.sql, *statement.args)
                        times[name].append(1000 * (time.perf_counter() - began))
            for name, values in times.items():
                out[name].append(statistics.median(values))
    finally:
        await conn.close()
    return out


async def bench_connect(database: str) -> Any:
    from mahavishnu_assets.database.pool import connect
    from mahavishnu_assets.database.server import embedded_server
    from mahavishnu_assets.settings import Settings

    return await connect(embedded_server(Settings(home=HOME)).start().with_database(database))


def relevant(row: Any, item: dict[str, Any]) -> bool:
    if row["path"] != item["path"]:
        return False
    overlap = min(row["end_line"], item["end"]) - max(row["start_line"], item["start"]) + 1
    smaller = min(row["end_line"] - row["start_line"] + 1, item["end"] - item["start"] + 1)
    return overlap >= smaller / 2


async def quality(database: str, items: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, float]]:
    conn = await bench_connect(database)
    out: dict[str, dict[str, float]] = {}
    try:
        for name, build in (("ts_rank", previous_statement), ("bm25", bm25_statement)):
            for kind, queries in items.items():
                ranks = []
                for item in queries:
                    statement = build(item["q"], 10)
                    rows = await conn.fetch(statement.sql, *statement.args)
                    ranks.append(next((i for i, r in enumerate(rows, 1) if relevant(r, item)), None))
                out[f"{name} {kind}"] = {
                    "mrr10": sum(1 / r for r in ranks if r) / len(ranks),
                    "hit1": sum(r == 1 for r in ranks) / len(ranks),
                    "hit10": sum(r is not None for r in ranks) / len(ranks),
                    "n": len(ranks),
                }
    finally:
        await conn.close()
    return out


def blanked_corpus(repo: Path) -> tuple[Path, dict[str, list[dict[str, Any]]]]:
    copy = bench.WORK / "corpus" / "django-blank"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(repo, copy, ignore=shutil.ignore_patterns(".git"))
    docs, unique, _ = definitions(copy, blank=True)
    rng = random.Random(7)
    not_tests = [d for d in docs if not d["path"].startswith("tests/")]
    names = [d for d in unique if not d["path"].startswith("tests/")]
    return copy, {"docstring": rng.sample(not_tests, 200), "identifier": rng.sample(names, 150)}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, round(p * len(ordered)) - 1)]


def report(figures: dict[str, Any]) -> list[str]:
    lines = [
        SECTION,
        "",
        f"Date: {time.strftime('%Y-%m-%d')}. Machine: {bench.machine()}. Code: commit {bench.commit()}. "
        f"Command: `python benchmarks/lexical_bench.py --rounds {figures['rounds']}"
        f"{' --rechunk' if 'rechunk' in figures else ''}{' --quality' if 'quality' in figures else ''} --write`. "
        f"Corpus: {bench.CORPORA['django']}.",
        "",
        "| ingest (median) | statistics triggers (0042) | chunks written / deleted | wall s | PostgreSQL CPU-s |",
        "|---|---|---|---|---|",
    ]
    for key, what in (("ingest", "first ingest"), ("rechunk", "re-chunk every file")):
        for side, runs in figures.get(key, {}).items():
            wall = statistics.median(r["wall"] for r in runs)
            cpu = statistics.median(r["pg_cpu"] for r in runs)
            counts = f"{runs[0]['written']} / {runs[0]['deleted']}"
            lines.append(f"| {what} | {side} | {counts} | {wall:.2f} | {cpu:.2f} |")
    lines += ["", "| text statement, 50 queries | k | p50 ms | p95 ms | max ms |", "|---|---|---|---|---|"]
    for k, by_name in figures["latency"].items():
        for name, values in by_name.items():
            lines.append(
                f"| {name} | {k} | {statistics.median(values):.1f} | {percentile(values, 0.95):.1f} "
                f"| {max(values):.1f} |"
            )
    if "quality" in figures:
        lines += [
            "",
            "| text mode, docstrings blanked | queries | MRR@10 | hit@1 | hit@10 |",
            "|---|---|---|---|---|",
        ]
        for name, q in figures["quality"].items():
            lines.append(f"| {name} | {q['n']} | {q['mrr10']:.3f} | {q['hit1']:.3f} | {q['hit10']:.3f} |")
    lines += [
        "",
        "Notes: the machine is shared, so walls move between runs; the ingests alternate sides and the table "
        "gives medians. PostgreSQL CPU is the embedded server's alone (postmaster, its live and reaped "
        "children). Latencies are the statement's execution inside a read-only transaction as search runs it, "
        "median of 5 per query; ts_rank is the statement BM25 replaced. Re-chunking deletes every stored chunk "
        "and loads new ones batch by batch: the triggers count both, and an ingest's two writers then queue on "
        "the repository's statistics row from a batch's delete to its commit.",
        "",
    ]
    return lines


def write_section(lines: list[str]) -> None:
    text = bench.RESULTS.read_text(encoding="utf-8") if bench.RESULTS.exists() else "# Results\n"
    start = text.find(SECTION)
    if start >= 0:
        end = text.find("\n## ", start + len(SECTION))
        text = text[:start] + "\n".join(lines) + (text[end + 1 :] if end >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + "\n".join(lines)
    bench.RESULTS.write_text(text, encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="first ingests of each side, alternating")
    parser.add_argument("--rechunk", action="store_true", help="also re-ingests that rewrite every file")
    parser.add_argument("--quality", action="store_true", help="also the blanked-docstring retrieval check")
    parser.add_argument("--write", action="store_true", help="write the section into benchmarks/RESULTS.md")
    args = parser.parse_args()
    bench.compile_package()
    (bench.WORK / "no-settings").mkdir(parents=True, exist_ok=True)
    repo = bench.prepare_corpus("django")
    figures: dict[str, Any] = {"rounds": args.rounds, "ingest": ingests(repo, args.rounds, rechunk=False)}
    if args.rechunk:
        figures["rechunk"] = ingests(repo, args.rounds, rechunk=True)
    queries = latency_queries(repo)
    figures["latency"] = {k: asyncio.run(latencies("lexical_with", queries, k)) for k in (10, 40)}
    if args.quality:
        copy, items = blanked_corpus(repo)
        stub = bench.Stub("--zero-cost")
        try:
            bench.fresh_database(HOME, "lexical_quality")
            env = bench.base_env(HOME, "lexical_quality", stub)
            bench.mahavishnu_up(env)
            bench.mahavishnu(["ingest", str(copy), "--json"], env)
        finally:
            stub.stop()
        figures["quality"] = asyncio.run(quality("lexical_quality", items))
    lines = report(figures)
    print("\n".join(lines))
    (bench.WORK / "lexical_results.json").write_text(json.dumps(figures, indent=2))
    if args.write:
        write_section(lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
