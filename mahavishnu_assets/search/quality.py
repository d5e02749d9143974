"""Retrieval quality of one repository, measured on known-item queries sampled from what is stored for it.

Three kinds of query, each with the lines it must find (a hit is relevant when it is in the right file and
overlaps those lines by at least half of the shorter of the two ranges, as in benchmarks/search_quality.py):

* `name`: a definition's name (a function, method, class... defined once in the repository; a method whose
  name is not unique by its qualified name) -> the definition;
* `line`: a distinctive line of code (enough characters and identifiers, found nowhere else in the
  repository) -> a chunk holding that line;
* `docstring`: the first sentence of a function's docstring or leading comment block -> the function, searched
  without the chunk holding that sentence (`SearchFilters.exclude_chunk_ids`), so the sentence never matches
  itself. Only functions split over several chunks qualify: the rest of the function is what must be found.

Sampling is a seeded hash order over stable keys (paths, names, lines), so unchanged data gives the same
queries, the same figures, run after run.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import re
import textwrap
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import asyncpg

from mahavishnu_assets.database.pool import Database
from mahavishnu_assets.errors import SearchError
from mahavishnu_assets.ingest.chunk import MARKDOWN, PROSE_LANGUAGES
from mahavishnu_assets.ingest.embed import Embedder, make_embedder
from mahavishnu_assets.search.filters import SearchFilters
from mahavishnu_assets.search.service import search_text
from mahavishnu_assets.settings import Settings

NAME, LINE, DOCSTRING = "name", "line", "docstring"
KINDS = (NAME, LINE, DOCSTRING)
K = 10
DEFAULT_COUNT = 60
DEFAULT_SEED = 0
DROP_TOLERANCE = 0.10  # a figure more than this fraction below the previous run's is a drop
DROP_METRICS = ("mrr_at_10", "hit_at_10")

NAME_KINDS = ("function", "method", "class", "interface", "struct", "trait", "enum")
FUNCTION_KINDS = ("function", "method")
MIN_NAME_CHARS = 3
MIN_LINE_CHARS = 24
MAX_LINE_CHARS = 200
MIN_LINE_IDENTIFIERS = 3
MAX_PLAIN_WORDS = 5
MIN_SENTENCE_WORDS = 4
MAX_SENTENCE_CHARS = 300  # a first paragraph with no full stop is not one sentence
# Not code: a line of these is prose or data.
NOT_CODE = frozenset({MARKDOWN, *PROSE_LANGUAGES, "json", "csv", "gettext", "latex"})
HASH_COMMENT_LANGUAGES = frozenset({"python", "shell", "ruby", "perl", "r", "julia", "elixir", "powershell"})
# Lines above a function read for its leading comment; a longer block is cut (its first sentence is on top).
COMMENT_LOOKBACK = 30

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{2,}")
_PLAIN_WORD = re.compile(r"[A-Za-z]+[,.;:]?")
_WORD = re.compile(r"[A-Za-z]{2,}")
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")
_PRAGMA = re.compile(r"noqa|type:\s*ignore|pylint|eslint|nolint|TODO|FIXME|XXX|SPDX|copyright", re.I)


@dataclass(frozen=True)
class KnownItem:
    """A query and the lines that answer it (`start_line..end_line` of `path`; a `line` query: one line)."""

    kind: str
    query: str
    path: str
    start_line: int
    end_line: int
    exclude_chunk_ids: tuple[int, ...] = ()

    def relevant(self, path: str, start_line: int, end_line: int) -> bool:
        if path != self.path:
            return False
        if self.kind == LINE:
            return start_line <= self.start_line <= end_line
        overlap = min(end_line, self.end_line) - max(start_line, self.start_line) + 1
        shorter = min(end_line - start_line + 1, self.end_line - self.start_line + 1)
        return overlap > 0 and 2 * overlap >= shorter

    def target(self) -> str:
        lines = f"{self.start_line}" if self.kind == LINE else f"{self.start_line}-{self.end_line}"
        return f"{self.path}:{lines}"


@dataclass(frozen=True)
class Scores:
    queries: int
    mrr_at_10: float
    hit_at_1: float
    hit_at_10: float


@dataclass(frozen=True)
class Outcome:
    item: KnownItem
    rank: int | None  # the first relevant hit's rank within k, None when none is
    top: str | None  # the first hit, `path:start-end`


@dataclass
class QualityReport:
    repo: str
    mode: str
    count: int
    seed: int
    outcomes: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0

    def scores(self, kind: str | None = None) -> Scores:
        ranks = [o.rank for o in self.outcomes if kind is None or o.item.kind == kind]
        return score(ranks)

    def worst(self, n: int = 5) -> list[Outcome]:
        """The n queries answered worst (not found first), in a stable order."""
        order = {kind: i for i, kind in enumerate(KINDS)}
        return sorted(
            self.outcomes, key=lambda o: (-(o.rank or K + 1), order[o.item.kind], o.item.query, o.item.path)
        )[:n]

    def figures(self) -> dict[str, float | int]:
        """Flat numbers: `mrr_at_10`, `hit_at_1`, `hit_at_10`, `queries`, and each `<kind>/...` the same."""
        out: dict[str, float | int] = {}
        for kind in (None, *KINDS):
            s = self.scores(kind)
            prefix = f"{kind}/" if kind else ""
            out[f"{prefix}queries"] = s.queries
            if s.queries:
                out[f"{prefix}mrr_at_10"] = round(s.mrr_at_10, 4)
                out[f"{prefix}hit_at_1"] = round(s.hit_at_1, 4)
                out[f"{prefix}hit_at_10"] = round(s.hit_at_10, 4)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "repo": self.repo,
            "mode": self.mode,
            "count": self.count,
            "seed": self.seed,
            "seconds": round(self.seconds, 3),
            **self.figures(),
            "worst": [
                {**asdict(o.item), "rank": o.rank, "top": o.top, "target": o.item.target()}
                for o in self.worst()
            ],
        }


def score(ranks: Sequence[int | None], k: int = K) -> Scores:
    """MRR@k, hit@1 and hit@k over first relevant ranks (None: nothing relevant in the top k)."""
    if not ranks:
        return Scores(0, 0.0, 0.0, 0.0)
    inside = [r for r in ranks if r is not None and r <= k]
    n = len(ranks)
    return Scores(n, sum(1 / r for r in inside) / n, sum(r == 1 for r in inside) / n, len(inside) / n)


def quality_drops(
    current: Mapping[str, float], previous: Mapping[str, float], *, tolerance: float = DROP_TOLERANCE
) -> list[str]:
    """The figures of DROP_METRICS more than `tolerance` (relative) below their previous value, described."""
    drops = []
    for key in DROP_METRICS:
        now, before = current.get(key), previous.get(key)
        if now is None or before is None or before <= 0:
            continue
        if now < before * (1 - tolerance) - 1e-9:
            drops.append(f"{key} {before:.3f} -> {now:.3f} ({(now - before) / before:+.0%})")
    return drops


# -- sampling ---------------------------------------------------------------------------------------------------
def _quotas(count: int) -> dict[str, int]:
    base, extra = divmod(max(0, count), len(KINDS))
    return {kind: base + (i < extra) for i, kind in enumerate(KINDS)}


def _order_key(seed: int, *parts: object) -> bytes:
    text = "\x1f".join(str(p) for p in (seed, *parts))
    return hashlib.blake2b(text.encode("utf-8", "replace"), digest_size=8).digest()


async def sample_known_items(
    conn: asyncpg.Connection, repo: str, count: int = DEFAULT_COUNT, seed: int = DEFAULT_SEED
) -> list[KnownItem]:
    """Up to `count` known-item queries of the stored repository `repo`, a third of each kind (fewer of a kind
    when the repository has fewer candidates), in a deterministic order for `seed`."""
    repo_id = await conn.fetchval("SELECT id FROM mahavishnu.repositories WHERE name = $1", repo)
    if repo_id is None:
        raise SearchError(
            f"No repository named {repo!r}", suggestion="Ingest it first (`mahavishnu ingest PATH`)."
        )
    quotas = _quotas(count)
    items = await _name_items(conn, repo_id, quotas[NAME], seed)
    items += await _line_items(conn, repo_id, quotas[LINE], seed)
    items += await _docstring_items(conn, repo_id, quotas[DOCSTRING], seed)
    return items


async def _name_items(conn: asyncpg.Connection, repo_id: int, n: int, seed: int) -> list[KnownItem]:
    if n <= 0:
        return []
    # Names counted over every definition of the repository; a name defined once is asked as is, a method
    # whose name is shared by its qualified name (`Engine.connect`).
    rows = await conn.fetch(
        """WITH s AS (
               SELECT path, name, qualified_name, kind, start_line, end_line,
                      count(*) OVER (PARTITION BY name) AS names,
                      count(*) OVER (PARTITION BY qualified_name) AS qualified
                 FROM mahavishnu.symbols WHERE repo_id = $1)
           SELECT path, start_line, end_line, qualified_name,
                  CASE WHEN names = 1 THEN name ELSE qualified_name END AS query, names = 1 AS unique_name
             FROM s
            WHERE kind = ANY($2::text[])
              AND ((names = 1 AND length(name) >= $3)
                   OR (qualified = 1 AND position('.' IN qualified_name) > 0))""",
        repo_id,
        list(NAME_KINDS),
        MIN_NAME_CHARS,
    )
    ordered = sorted(
        rows, key=lambda r: (not r["unique_name"], _order_key(seed, r["path"], r["qualified_name"]))
    )
    return [KnownItem(NAME, r["query"], r["path"], r["start_line"], r["end_line"]) for r in ordered[:n]]


def is_code_line(line: str) -> bool:
    """A line worth searching for: long enough, several identifiers, code punctuation, not a comment."""
    text = line.strip()
    if not MIN_LINE_CHARS <= len(text) <= MAX_LINE_CHARS:
        return False
    if text.startswith(("#", "//", "/*", "*", "--", "- ", ":", '"""', "'''", "<!--")):
        return False
    if not any(ch in text for ch in "(=[{"):
        return False
    # Prose (a docstring's or a comment's line, a message): many plain words between the symbols.
    if sum(1 for token in text.split() if _PLAIN_WORD.fullmatch(token)) >= MAX_PLAIN_WORDS:
        return False
    return len(_IDENTIFIER.findall(text)) >= MIN_LINE_IDENTIFIERS


async def _line_items(conn: asyncpg.Connection, repo_id: int, n: int, seed: int) -> list[KnownItem]:
    if n <= 0:
        return []
    # Chunks in the seeded order (in SQL: only the few picked travel), one line from each.
    chunks = await conn.fetch(
        """SELECT file_id, path, start_line, content FROM mahavishnu.chunks
            WHERE repo_id = $1 AND NOT (language = ANY($2::text[]))
            ORDER BY md5($3 || ':' || path || ':' || start_line), path, start_line
            LIMIT $4""",
        repo_id,
        sorted(NOT_CODE),
        str(seed),
        2 * n + 10,
    )
    picked: list[tuple[str, int, int, str]] = []  # (text, file id, line number, path)
    for chunk in chunks:
        lines = [line.strip() for line in chunk["content"].split("\n")]
        options = [(i, text) for i, text in enumerate(lines) if is_code_line(text) and lines.count(text) == 1]
        if options:
            i, text = min(options, key=lambda o: _order_key(seed, chunk["path"], o[1]))
            picked.append((text, chunk["file_id"], chunk["start_line"] + i, chunk["path"]))
    if not picked:
        return []
    items: list[KnownItem] = []
    for text, file_id, line, path in picked:
        if await _unique_line(conn, repo_id, text, file_id, line):
            items.append(KnownItem(LINE, text, path, line, line))
            if len(items) == n:
                break
    return items


# The chunks holding a line's text (even inside a longer line), found through the text index by the whole
# identifiers inside the line (characters of the line on both sides, so the same words wherever the text
# appears), then confirmed by substring search; the text is unique when they all cover that very line. One
# statement per line with the words as a constant, and the repository checked after the index: right after
# an ingest the table's statistics are stale, and a repository condition would lead the planner to its index.
_HOLDERS = """SELECT count(*) FILTER (WHERE c.repo_id = $1) AS holders,
       count(*) FILTER (WHERE c.repo_id = $1
                          AND NOT (c.file_id = $4 AND c.start_line <= $5 AND c.end_line >= $5)) AS elsewhere
  FROM mahavishnu.chunks c
 WHERE c.search_terms @@ plainto_tsquery('english', mahavishnu.code_words($2)) AND strpos(c.content, $3) > 0"""
_INNER_IDENTIFIER = re.compile(r"(?<=[^A-Za-z0-9_])[A-Za-z_][A-Za-z0-9_]*(?=[^A-Za-z0-9_])")


async def _unique_line(conn: asyncpg.Connection, repo_id: int, text: str, file_id: int, line: int) -> bool:
    inner = " ".join(_INNER_IDENTIFIER.findall(text))
    row = await conn.fetchrow(_HOLDERS, repo_id, inner, text, file_id, line)
    # No holder at all: the inner words are all stop words and the index cannot tell; left out.
    return row is not None and row["holders"] > 0 and row["elsewhere"] == 0


def first_sentence(text: str) -> str:
    """The first sentence of a docstring or comment on one line: its first paragraph up to the first `.`, `!`
    or `?` followed by a space or the end."""
    paragraph = inspect.cleandoc(text).strip().split("\n\n", 1)[0]
    flat = " ".join(paragraph.split())
    match = _SENTENCE_END.search(flat)
    return flat[: match.end()] if match else flat


def _comment_text(line: str, language: str) -> str | None:
    """The text of a comment line (markers stripped), or None when the line is not a comment."""
    text = line.strip()
    if language in HASH_COMMENT_LANGUAGES:
        if text.startswith("#") and not text.startswith("#!"):
            return text.lstrip("#").strip()
        return None
    if text.startswith("//"):
        return text.lstrip("/").lstrip("!").strip()
    if text.startswith(("/*", "*")):
        return text.lstrip("/").lstrip("*").rstrip("/").rstrip("*").strip()
    return None


def _is_annotation(line: str) -> bool:
    text = line.strip()
    return text.startswith("@") or text.startswith("#[")


def _python_docstring(lines: dict[int, str], start: int, end: int) -> tuple[str, int, int] | None:
    """(docstring, its first line, its last line) of the Python function on lines start..end."""
    block = textwrap.dedent("\n".join(lines.get(i, "") for i in range(start, end + 1)))
    try:
        tree = ast.parse(block)
    except (SyntaxError, ValueError):
        return None
    node = tree.body[0] if tree.body else None
    if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        return None
    doc = ast.get_docstring(node, clean=False)
    if not doc or not node.body:
        return None
    first = node.body[0]
    return doc, start + first.lineno - 1, start + (first.end_lineno or first.lineno) - 1


def _leading_comment(lines: dict[int, str], start: int, language: str) -> tuple[str, int, int] | None:
    """(text, first line, last line) of the comment block right above the definition starting at `start` (its
    first decorator or attribute); annotations between comment lines are passed over."""
    i = start - 1
    collected: list[tuple[int, str]] = []
    while i >= max(1, start - COMMENT_LOOKBACK) and i in lines and lines[i].strip():
        text = _comment_text(lines[i], language)
        if text is None:
            if _is_annotation(lines[i]):
                i -= 1
                continue
            break
        collected.append((i, text))
        i -= 1
    if not collected:
        return None
    collected.reverse()
    return "\n".join(t for _, t in collected), collected[0][0], collected[-1][0]


def _sentence_lines(lines: dict[int, str], first: int, last: int, sentence: str) -> tuple[int, int]:
    """The lines, within first..last, over which the sentence's words run (from the first line with a word)."""
    wanted = len(_WORD.findall(sentence))
    seen = 0
    begin = None
    for i in range(first, last + 1):
        words = len(_WORD.findall(lines.get(i, "")))
        if words and begin is None:
            begin = i
        seen += words
        if begin is not None and seen >= wanted:
            return begin, i
    return (begin or first), last


def docstring_of(lines: dict[int, str], start: int, end: int, language: str) -> tuple[str, int, int] | None:
    """(first sentence, lines it spans) of the function on start..end: its Python docstring, else the comment
    block right above it; None without one of at least MIN_SENTENCE_WORDS words."""
    found = _python_docstring(lines, start, end) if language == "python" else None
    found = found or _leading_comment(lines, start, language)
    if found is None:
        return None
    text, first, last = found
    sentence = first_sentence(text)
    if (
        len(_WORD.findall(sentence)) < MIN_SENTENCE_WORDS
        or len(sentence) > MAX_SENTENCE_CHARS
        or _PRAGMA.search(sentence)
        or sentence[0] in "@:"
    ):
        return None
    return (sentence, *_sentence_lines(lines, first, last, sentence))


async def _docstring_items(conn: asyncpg.Connection, repo_id: int, n: int, seed: int) -> list[KnownItem]:
    if n <= 0:
        return []
    # Functions split over several chunks (one starts inside them): the others fit in the chunk that holds
    # their docstring, and nothing of them would be left to find once it is excluded.
    rows = await conn.fetch(
        """SELECT s.file_id, s.path, s.language, s.qualified_name, s.start_line, s.end_line
             FROM mahavishnu.symbols s
            WHERE s.repo_id = $1 AND s.kind = ANY($2::text[])
              AND EXISTS (SELECT 1 FROM mahavishnu.chunks c
                           WHERE c.file_id = s.file_id AND c.start_line > s.start_line
                             AND c.start_line <= s.end_line)""",
        repo_id,
        list(FUNCTION_KINDS),
    )
    ordered = sorted(rows, key=lambda r: _order_key(seed, r["path"], r["qualified_name"], r["start_line"]))
    items: list[KnownItem] = []
    batch = 4 * n
    for offset in range(0, len(ordered), batch):
        candidates = ordered[offset : offset + batch]
        chunks = await conn.fetch(
            """SELECT l.i, c.id, c.start_line, c.end_line, c.content
                 FROM unnest($1::bigint[], $2::int[], $3::int[]) WITH ORDINALITY AS l(file_id, lo, hi, i)
                 JOIN mahavishnu.chunks c
                   ON c.file_id = l.file_id AND c.end_line >= l.lo AND c.start_line <= l.hi
                ORDER BY l.i, c.start_line, c.id""",
            [r["file_id"] for r in candidates],
            [max(1, r["start_line"] - COMMENT_LOOKBACK) for r in candidates],
            [r["end_line"] for r in candidates],
        )
        by_candidate: dict[int, list[asyncpg.Record]] = {}
        for chunk in chunks:
            by_candidate.setdefault(chunk["i"], []).append(chunk)
        for i, row in enumerate(candidates, 1):
            item = _docstring_item(row, by_candidate.get(i, []))
            if item is not None:
                items.append(item)
                if len(items) == n:
                    return items
    return items


def _docstring_item(row: asyncpg.Record, chunks: list[asyncpg.Record]) -> KnownItem | None:
    lines: dict[int, str] = {}
    for chunk in chunks:
        for offset, text in enumerate(chunk["content"].split("\n")):
            lines.setdefault(chunk["start_line"] + offset, text)
    start, end = row["start_line"], row["end_line"]
    found = docstring_of(lines, start, end, row["language"])
    if found is None:
        return None
    sentence, first, last = found
    own = tuple(c["id"] for c in chunks if c["start_line"] <= last and c["end_line"] >= first)
    item = KnownItem(DOCSTRING, sentence, row["path"], start, end, exclude_chunk_ids=own)
    rest = [c for c in chunks if c["id"] not in own]
    if not any(item.relevant(row["path"], c["start_line"], c["end_line"]) for c in rest):
        return None
    return item


# -- measuring --------------------------------------------------------------------------------------------------
def _without_query_log(settings: Settings) -> Settings:
    # Sampled queries are not what users ask: keep them out of the log the ANN tuner measures recall on.
    return settings.model_copy(update={"index": settings.index.model_copy(update={"query_log": False})})


async def measure_quality(
    db: Database,
    settings: Settings,
    repo: str,
    *,
    count: int = DEFAULT_COUNT,
    seed: int = DEFAULT_SEED,
    mode: str = "hybrid",
    embedder: Embedder | None = None,
) -> QualityReport:
    """Run `count` sampled known-item queries of `repo` through `search_text` (k=10, filtered to the
    repository) and score the first relevant hit of each."""
    started = time.perf_counter()
    async with db.connection() as conn:
        items = await sample_known_items(conn, repo, count, seed)
    report = QualityReport(repo=repo, mode=mode, count=count, seed=seed)
    settings = _without_query_log(settings)
    own = embedder is None and mode not in ("text", "symbol")
    if own:
        embedder = make_embedder(settings)
    try:
        for item in items:
            filters = SearchFilters(repo=repo, exclude_chunk_ids=item.exclude_chunk_ids)
            found = await search_text(
                db, settings, item.query, mode=mode, k=K, filters=filters, embedder=embedder
            )
            hits = found["results"]
            rank = next(
                (
                    i
                    for i, h in enumerate(hits, 1)
                    if item.relevant(h["path"], h["start_line"], h["end_line"])
                ),
                None,
            )
            top = f"{hits[0]['path']}:{hits[0]['start_line']}-{hits[0]['end_line']}" if hits else None
            report.outcomes.append(Outcome(item, rank, top))
    finally:
        if own and embedder is not None:
            await embedder.aclose()
    report.seconds = time.perf_counter() - started
    return report
