"""Search quality: ours in each mode against LlamaIndex VectorStoreIndex and BM25, same model, same run.

    python benchmarks/search_quality.py [--corpus sqlalchemy rich] [--max-queries 300] [--split report] [--write]

Corpora: real projects' source distributions from PyPI (`pip download --no-binary :all: --no-deps NAME==VERSION`),
unpacked under benchmarks/.work. Python only: the indexed copy holds the distribution's `.py` files with every
docstring blanked (`quality_sets.blank_docstrings`: same line count, so line numbers stay true), `git init`ed
and committed. Three query sets per corpus, built with `ast` from the ORIGINAL files (`quality_sets`): `nl`, the
first sentence of a function's or method's docstring (4 words or more, the sentence unique in the corpus);
`identifier`, a function, method or class name defined exactly once in the corpus; `qualified`,
`Class.method`, unique. Targets are definitions outside test code, decorators included. A hit is relevant when
it is in the target's file and overlaps the target's lines by at least half of the shorter range; metrics are
MRR@10, hit@1 and hit@10.

Each set is split by a hash of the target into a `tune` and a `report` half; only `report` is shown and
written (at most --max-queries per set, a deterministic sample). Whoever tunes weights runs `--split tune`
and never looks at the report half.

Everyone embeds with the same model, WordLlama (256 dimensions, shipped in its wheel): ours through its
offline `local` embedder (MAHAVISHNU_EMBEDDER=local), which gives the model each text's word form
(`ingest.word_form`), the peers through a LlamaIndex `BaseEmbedding` around the same model, raw text as
LlamaIndex sends it (quality_peers.py). Ours: the real `mahavishnu ingest COPY --name NAME --json`, then every query through the
search service in process (`search.service.search_text`, one pool), in each mode the CLI offers. PostgreSQL
is the embedded server under benchmarks/.work/quality/home, one database per corpus. With --write the report
half's tables replace the `## Search quality` section of benchmarks/RESULTS.md; every run writes its figures
and per-query ranks to benchmarks/.work/quality/results-SPLIT.json. Progress goes to standard error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import resource
import shutil
import sys
import tarfile
import time
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

from ingest_bench import COMMAND, RESULTS, ROOT, WORK, admin, commit, git, machine, run
from quality_sets import (
    KINDS,
    Definition,
    Query,
    blank_docstrings,
    build_query_sets,
    definitions,
    first_relevant_rank,
    score,
    select,
)

HERE = Path(__file__).resolve().parent
QUALITY = WORK / "quality"
CORPORA = {
    "sqlalchemy": "sqlalchemy==2.1.9",
    "rich": "rich==14.0.0",
    "flask": "flask==3.1.3",
    "click": "click==8.2.1",
    "httpx": "httpx==0.28.1",
    "requests": "requests==2.32.4",
    "attrs": "attrs==25.3.0",
    "django": "django==5.2.19",
}
DEFAULT_CORPORA = ["sqlalchemy", "rich"]
DIMENSIONS = 256
SECTION = "## Search quality"
SET_TITLES = {
    "nl": "natural language (first docstring sentence)",
    "identifier": "identifier (a name defined once)",
    "qualified": "qualified name (`Class.method`)",
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- corpora --------------------------------------------------------------------------------------------------
@dataclass
class Corpus:
    name: str
    spec: str
    root: Path  # the indexed copy
    files: int = 0
    lines: int = 0
    unparsed: list[str] = field(default_factory=list)  # kept verbatim: not Python 3, no queries from them
    definitions: list[Definition] = field(default_factory=list)
    sets: dict[str, list[Query]] = field(default_factory=dict)


def download(spec: str) -> Path:
    name, wanted = spec.split("==")
    downloads = WORK / "dl"
    downloads.mkdir(parents=True, exist_ok=True)

    def found() -> list[Path]:
        prefixes = {f"{name}-{wanted}".lower(), f"{name.replace('-', '_')}-{wanted}".lower()}
        return [p for p in downloads.glob("*.tar.gz") if any(p.name.lower().startswith(x) for x in prefixes)]

    if not found():
        run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-binary",
                ":all:",
                "--no-deps",
                "-d",
                str(downloads),
                spec,
            ]
        )
    return found()[0]


def prepare(name: str) -> Corpus:
    """The sdist's Python files, docstrings blanked, in a fresh git work tree; query sets from the originals."""
    spec = CORPORA[name]
    archive = download(spec)
    corpus = Corpus(name, spec, QUALITY / "corpus" / name)
    shutil.rmtree(corpus.root, ignore_errors=True)
    corpus.root.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if not member.isfile() or not member.name.endswith(".py"):
                continue
            parts = member.name.split("/")[1:]  # without the top folder NAME-VERSION/
            stream = tar.extractfile(member)
            if not parts or ".." in parts or stream is None:
                continue
            path = "/".join(parts)
            try:
                source = stream.read().decode("utf-8")
            except UnicodeDecodeError:
                continue
            out = source
            try:
                found = definitions(path, source)
                out = blank_docstrings(source)
            except (SyntaxError, ValueError):
                corpus.unparsed.append(path)  # its docstrings stay, so nothing in it is a target
            else:
                corpus.definitions += found
            target = corpus.root / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(out, encoding="utf-8", newline="")
            corpus.files += 1
            corpus.lines += source.count("\n")
    git(corpus.root, "init", "-q", "-b", "main")
    git(corpus.root, "config", "gc.auto", "0")
    git(corpus.root, "add", "-A")
    git(corpus.root, "commit", "-q", "-m", f"{spec}: Python files, docstrings blanked")
    corpus.sets = build_query_sets(corpus.definitions)
    return corpus


# -- our side -------------------------------------------------------------------------------------------------
def environment(database: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAHAVISHNU_")}
    env.update(
        {
            "MAHAVISHNU_HOME": str(QUALITY / "home"),
            "MAHAVISHNU_SETTINGS_DIR": str(QUALITY / "no-settings"),
            "MAHAVISHNU_POSTGRES__DATABASE": database,
            "MAHAVISHNU_EMBEDDER": "local",
            "XDG_CACHE_HOME": str(QUALITY / "cache"),
        }
    )
    return env


def our_modes() -> list[str]:
    """The modes `mahavishnu search --help` lists (`symbol` once it exists)."""
    help_text = run([*COMMAND, "search", "--help"], cwd=ROOT)
    match = re.search(r"--mode \{([a-z,]+)\}", help_text)
    listed = match.group(1).split(",") if match else ["vector", "text", "hybrid"]
    order = ["hybrid", "vector", "text", "symbol"]
    return [m for m in order if m in listed] + [m for m in listed if m not in order]


def ingest(corpus: Corpus, env: dict[str, str]) -> dict[str, Any]:
    started = time.perf_counter()
    out = run([*COMMAND, "ingest", str(corpus.root), "--name", corpus.name, "--json"], env=env, cwd=ROOT)
    report = json.loads(out.strip().splitlines()[-1])
    report["wall"] = time.perf_counter() - started
    return report


async def our_hits(
    corpus: Corpus, queries: dict[str, list[Query]], modes: list[str], env: dict[str, str]
) -> tuple[dict[str, dict[str, list[list[tuple[str, int, int]]]]], dict[str, Any]]:
    """Top-10 hits of every mode for every query, through the search service in this process."""
    from mahavishnu_assets.database.server import open_database
    from mahavishnu_assets.errors import MahavishnuError
    from mahavishnu_assets.ingest.embed import make_embedder
    from mahavishnu_assets.search.filters import SearchFilters
    from mahavishnu_assets.search.service import search_text
    from mahavishnu_assets.settings import load_settings

    os.environ.update(env)
    settings = load_settings()
    db = await open_database(settings)
    embedder = make_embedder(settings)
    filters = SearchFilters(repo=corpus.name)
    limit = asyncio.Semaphore(4)
    methods: dict[str, set[str]] = {}
    errors: dict[str, dict[str, int]] = {}
    messages: dict[str, str] = {}

    async def one(mode: str, kind: str, text: str) -> list[tuple[str, int, int]]:
        async with limit:
            try:
                found = await search_text(
                    db, settings, text, mode=mode, k=10, filters=filters, embedder=embedder
                )
            except MahavishnuError as exc:
                # A query a mode declines (a sentence given to `symbol`) finds nothing; counted and reported.
                errors.setdefault(mode, {}).setdefault(kind, 0)
                errors[mode][kind] += 1
                messages.setdefault(mode, str(exc))
                return []
        methods.setdefault(mode, set()).add(str(found.get("method")))
        return [(r["path"], r["start_line"], r["end_line"]) for r in found["results"]]

    out: dict[str, dict[str, list[list[tuple[str, int, int]]]]] = {}
    seconds: dict[str, float] = {}
    try:
        for mode in modes:
            started = time.perf_counter()
            out[f"ours-{mode}"] = {
                kind: list(await asyncio.gather(*(one(mode, kind, q.text) for q in qs)))
                for kind, qs in queries.items()
            }
            seconds[mode] = time.perf_counter() - started
            failed = f"; declined {errors[mode]} (first: {messages[mode]})" if mode in errors else ""
            log(
                f"  ours {mode}: {sum(len(q) for q in queries.values())} queries in {seconds[mode]:.1f}s{failed}"
            )
        async with db.connection() as conn:
            versions = await conn.fetchrow(
                "SELECT current_setting('server_version') AS postgres, "
                "(SELECT extversion FROM pg_extension WHERE extname = 'vector') AS pgvector"
            )
    finally:
        await embedder.aclose()
        await db.close()
    info = {
        "query_seconds": seconds,
        "vector_method": {m: sorted(v) for m, v in methods.items() if m != "text"},
        "declined": errors,
        "declined_example": messages,
        "postgres": versions["postgres"],
        "pgvector": versions["pgvector"],
    }
    return out, info


async def stored_paths(home: Path, database: str, repo: str) -> list[str]:
    """The files our ingest stored: the peers index exactly these."""
    from mahavishnu_assets.database.pool import connect
    from mahavishnu_assets.database.server import embedded_server
    from mahavishnu_assets.settings import Settings

    conn = await connect(embedded_server(Settings(home=home)).start().with_database(database))
    try:
        rows = await conn.fetch(
            """SELECT f.path FROM mahavishnu.source_files f JOIN mahavishnu.repositories r ON r.id = f.repo_id
                WHERE r.name = $1 ORDER BY f.path""",
            repo,
        )
    finally:
        await conn.close()
    return [r["path"] for r in rows]


# -- one corpus -----------------------------------------------------------------------------------------------
def run_corpus(name: str, args: argparse.Namespace, modes: list[str]) -> dict[str, Any]:
    from quality_peers import run_peers

    started = time.perf_counter()
    log(f"corpus {CORPORA[name]}: preparing")
    corpus = prepare(name)
    database = f"quality_{name}"
    home = QUALITY / "home"
    env = environment(database)
    asyncio.run(
        admin(home, [f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)', f'CREATE DATABASE "{database}"'])
    )
    log(
        f"  {corpus.files} Python files, {corpus.lines} lines ({len(corpus.unparsed)} not Python 3, kept as they are); "
        + ", ".join(f"{k} {len(v)} candidates" for k, v in corpus.sets.items())
    )
    result: dict[str, Any] = {
        "corpus": corpus.spec,
        "files": corpus.files,
        "lines": corpus.lines,
        "unparsed": corpus.unparsed,
        "split": args.split,
    }
    figures: dict[str, Any] = {}
    if "ours" in args.systems:
        report = ingest(corpus, env)
        log(f"  ours ingest: {report['chunks_written']} chunks in {report['wall']:.1f}s")
        result["ingest"] = {
            k: report.get(k)
            for k in ("files_seen", "files_changed", "files_skipped", "skipped", "chunks_written", "wall")
        }
        paths = asyncio.run(stored_paths(home, database, name))
    else:
        paths = sorted(p.relative_to(corpus.root).as_posix() for p in corpus.root.rglob("*.py"))
    stored = set(paths)
    queries = {
        kind: select([q for q in corpus.sets[kind] if q.target.path in stored], args.split, args.max_queries)
        for kind in KINDS
    }
    result["candidates"] = {k: len(v) for k, v in corpus.sets.items()}
    result["targets_not_stored"] = {
        k: sum(q.target.path not in stored for q in v) for k, v in corpus.sets.items()
    }
    result["queries"] = {k: len(v) for k, v in queries.items()}
    log("  queries: " + ", ".join(f"{k} {len(v)}" for k, v in queries.items()))
    hits: dict[str, dict[str, list[list[tuple[str, int, int]]]]] = {}
    if "ours" in args.systems:
        ours, info = asyncio.run(our_hits(corpus, queries, modes, env))
        hits.update(ours)
        result["ours"] = info
    if {"llamaindex", "bm25"} & set(args.systems):
        peers = run_peers(
            corpus.root,
            paths,
            {k: [q.text for q in v] for k, v in queries.items()},
            dimensions=DIMENSIONS,
            systems=args.systems,
        )
        for system, found in peers.items():
            hits[system] = found.pop("hits")
            figures[system] = found
    result["peers"] = figures
    result["scores"] = {}
    result["ranks"] = {}
    for system, per_set in hits.items():
        result["scores"][system] = {}
        result["ranks"][system] = {}
        for kind, qs in queries.items():
            ranks = [first_relevant_rank(q.target, h) for q, h in zip(qs, per_set[kind], strict=True)]
            result["scores"][system][kind] = score(ranks).to_dict()
            result["ranks"][system][kind] = ranks
    result["query_list"] = {k: [[q.text, q.target.key()] for q in v] for k, v in queries.items()}
    result["seconds"] = time.perf_counter() - started
    return result


# -- output ---------------------------------------------------------------------------------------------------
SYSTEM_ORDER = [
    "ours-hybrid",
    "ours-vector",
    "ours-text",
    "ours-symbol",
    "llamaindex-code",
    "llamaindex-sentence",
    "bm25",
]
SYSTEM_NAMES = {
    "ours-hybrid": "ours, hybrid (default)",
    "ours-vector": "ours, vector",
    "ours-text": "ours, text",
    "ours-symbol": "ours, symbol",
    "llamaindex-code": "LlamaIndex VectorStoreIndex, CodeSplitter",
    "llamaindex-sentence": "LlamaIndex VectorStoreIndex, SentenceSplitter",
    "bm25": "BM25 (bm25s) over CodeSplitter chunks",
}


def ordered(systems: list[str]) -> list[str]:
    return [s for s in SYSTEM_ORDER if s in systems] + sorted(s for s in systems if s not in SYSTEM_ORDER)


def tables(result: dict[str, Any]) -> list[str]:
    ingest_note = ""
    if "ingest" in result:
        i = result["ingest"]
        ingest_note = f"; ours stored {i['files_changed']} files as {i['chunks_written']} chunks (skipped: {json.dumps(i['skipped'])})"
    peers = result.get("peers", {})
    peer_note = "".join(
        f"; {SYSTEM_NAMES.get(s, s)}: {p['nodes']} nodes"
        for s, p in peers.items()
        if s.startswith("llamaindex")
    )
    lines = [
        f"### `{result['corpus']}`: {result['files']} Python files, {result['lines']} lines",
        "",
        "Query candidates (both halves): "
        + ", ".join(f"{k} {n}" for k, n in result["candidates"].items())
        + f"; {result['split']} half used: "
        + ", ".join(f"{k} {n}" for k, n in result["queries"].items())
        + ingest_note
        + peer_note
        + ".",
        "",
    ]
    systems = ordered(list(result["scores"]))
    for kind in KINDS:
        lines += [
            f"{SET_TITLES[kind]}, {result['queries'][kind]} queries:",
            "",
            "| system | queries | MRR@10 | hit@1 | hit@10 |",
            "|---|---|---|---|---|",
        ]
        declined = result.get("ours", {}).get("declined", {})
        for system in systems:
            s = result["scores"][system][kind]
            name = SYSTEM_NAMES.get(system, system)
            refused = (
                declined.get(system.removeprefix("ours-"), {}).get(kind) if system.startswith("ours-") else 0
            )
            if refused:
                name += f" ({refused} declined)"
            bold = "**" if system == "ours-hybrid" else ""
            lines.append(
                f"| {bold}{name}{bold} | {s['queries']} | {bold}{s['mrr@10']:.3f}{bold} | {s['hit@1']:.3f} | {s['hit@10']:.3f} |"
            )
        lines.append("")
    lines += targets(result)
    return lines


def targets(result: dict[str, Any]) -> list[str]:
    """The issue's targets for the default mode, when every system ran."""
    scores = result["scores"]
    if not {"ours-hybrid", "bm25"} <= set(scores) or not any(s.startswith("llamaindex") for s in scores):
        return []
    ours = scores["ours-hybrid"]
    li = max((s for s in scores if s.startswith("llamaindex")), key=lambda s: scores[s]["nl"]["mrr@10"])
    rows = []

    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}×" if b else "n/a"

    nl = ours["nl"]["mrr@10"]
    rows.append(
        f"| NL MRR@10 vs the better LlamaIndex ({SYSTEM_NAMES[li]}: {scores[li]['nl']['mrr@10']:.3f}) | "
        f"{ratio(nl, scores[li]['nl']['mrr@10'])} | ≥ 2× | {'✅' if nl >= 2 * scores[li]['nl']['mrr@10'] else '❌'} |"
    )
    rows.append(
        f"| NL MRR@10 vs BM25 ({scores['bm25']['nl']['mrr@10']:.3f}) | {ratio(nl, scores['bm25']['nl']['mrr@10'])} | "
        f"≥ 1.5× | {'✅' if nl >= 1.5 * scores['bm25']['nl']['mrr@10'] else '❌'} |"
    )
    for kind in ("identifier", "qualified"):
        v = ours[kind]["mrr@10"]
        rows.append(f"| {kind} MRR@10 | {v:.3f} | ≥ 0.9 | {'✅' if v >= 0.9 else '❌'} |")
    return [
        "Targets, default mode (hybrid):",
        "",
        "| measure | ours | target | result |",
        "|---|---|---|---|",
        *rows,
        "",
    ]


def versions() -> str:
    names = (
        "llama-index-core",
        "llama-index-vector-stores-faiss",
        "faiss-cpu",
        "bm25s",
        "wordllama",
        "tree-sitter-python",
        "ollama",
    )
    return ", ".join(f"{n} {version(n)}" for n in names)


def header(
    results: list[dict[str, Any]], args: argparse.Namespace, wall: float, cpu: dict[str, float]
) -> list[str]:
    ours = next((r["ours"] for r in results if "ours" in r), {})
    corpora = " ".join(r["corpus"].split("==")[0] for r in results)
    return [
        f"Date: {time.strftime('%Y-%m-%d')}. Machine: {machine()}. Code: commit {commit()}. "
        f"Command: `python benchmarks/search_quality.py --corpus {corpora} --max-queries {args.max_queries} --write` "
        f"({wall / 60:.1f} min wall for the whole run; CPU seconds outside PostgreSQL: the benchmark's process "
        f"{cpu['benchmark']}, the commands it ran {cpu['commands']}; load average {cpu['load'][0]} at the start, "
        f"{cpu['load'][1]} at the end, on {os.cpu_count()} cores). Versions: {versions()}; PostgreSQL {ours.get('postgres', '?')} "
        f"+ pgvector {ours.get('pgvector', '?')} (embedded).",
        "",
        "Setup: each corpus is a project's source distribution from PyPI, **Python files only**, every docstring "
        "blanked in the indexed copy with line numbers kept. Queries come from the original files' `ast` "
        "(targets outside test code): `nl` = the first sentence of a function's or method's docstring (≥ 4 words, "
        "unique), `identifier` = a function, method or class name defined once in the corpus, `qualified` = "
        "`Class.method`, unique. A target spans its definition from the first decorator to its last line. A hit is "
        "relevant when it is in the right file and overlaps the target by at least half of the shorter of the two "
        "line ranges. Each set is split in halves by a hash of the target; the tables show only the **report** "
        "half (at most --max-queries per set, a deterministic sample); weights may be tuned only on the other "
        "half (`--split tune`).",
        "",
        f"Same embedding model for everyone: WordLlama l2_supercat, {DIMENSIONS} dimensions, from its wheel. Ours: "
        "`mahavishnu ingest` (the real command) with the offline embedder (MAHAVISHNU_EMBEDDER=local), which gives "
        "the model each text's word form (identifiers split, no keywords or stop words; documents and queries "
        "alike), then each query through the search service in process (one pool; the vector "
        f"half ran as {json.dumps(ours.get('vector_method', {}))}: `mahavishnu ingest` builds no ANN index). "
        "LlamaIndex: "
        "`SimpleDirectoryReader` → `CodeSplitter` (tree-sitter-python) or `SentenceSplitter`, defaults → "
        "`VectorStoreIndex` on `FaissVectorStore` (flat inner-product index over unit vectors: exact cosine) with a `BaseEmbedding` around the same "
        "model on the raw text, retriever top 10; node lines found by locating each node's text verbatim in its file. BM25: "
        "`bm25s` over the CodeSplitter chunks, default tokenizer (lower-case, English stop words, no stemmer), "
        "default BM25 (Lucene, k1 1.5, b 0.75).",
        "",
    ]


def write_results(
    results: list[dict[str, Any]], args: argparse.Namespace, wall: float, cpu: dict[str, float]
) -> None:
    lines = [SECTION, "", *header(results, args, wall, cpu)]
    for result in results:
        lines += tables(result)
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    block = "\n".join(lines)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + block
    RESULTS.write_text(text)
    log(f"wrote {RESULTS}")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--corpus", choices=sorted(CORPORA), nargs="+", default=DEFAULT_CORPORA)
    parser.add_argument("--max-queries", type=int, default=300, help="per query set and corpus (default 300)")
    parser.add_argument("--split", choices=["report", "tune"], default="report")
    parser.add_argument(
        "--systems", choices=["ours", "llamaindex", "bm25"], nargs="+", default=["ours", "llamaindex", "bm25"]
    )
    parser.add_argument(
        "--write", action="store_true", help="write the report half into benchmarks/RESULTS.md"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # Said once per file read: no other reader than the plain text one is needed for .py files.
    logging.getLogger("llama_index.core.readers.file.base").setLevel(logging.ERROR)
    logging.getLogger("bm25s").setLevel(logging.WARNING)
    if args.write and args.split != "report":
        parser.error("--write publishes the report half only; tune on `--split tune` without --write")
    started = time.perf_counter()
    load_at_start = os.getloadavg()[0]
    (QUALITY / "no-settings").mkdir(parents=True, exist_ok=True)
    modes = our_modes() if "ours" in args.systems else []
    results = []
    for name in args.corpus:
        results.append(run_corpus(name, args, modes))
    wall = time.perf_counter() - started
    # PostgreSQL's share is not counted: other work on the machine may run servers of the same name.
    own, children = (resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    cpu = {
        "benchmark": round(own.ru_utime + own.ru_stime, 1),  # this process: peers and our searches
        "commands": round(children.ru_utime + children.ru_stime, 1),  # `mahavishnu ingest`, pip, git
        # The machine's load (1-minute average) at the start and the end: other work slows every wall above.
        "load": [round(load_at_start, 1), round(os.getloadavg()[0], 1)],
    }
    log(f"CPU seconds: {json.dumps(cpu)}")
    out = QUALITY / f"results-{args.split}.json"
    out.write_text(json.dumps({"wall": wall, "cpu": cpu, "results": results}, indent=1))
    for result in results:
        print("\n".join(tables(result)))
    log(f"figures and per-query ranks: {out}; whole run {wall:.0f}s")
    if args.write:
        write_results(results, args, wall, cpu)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
