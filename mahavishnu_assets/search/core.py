"""Vector, text and hybrid search over chunks, given a query vector and its embedding space.

Every search runs in one read-only REPEATABLE READ transaction (the vector and text halves of a hybrid search
see the same data) that sets, with SET LOCAL, the search parameter tuned for the space's index and pgvector's
iterative scan, so filtered searches still find k results. When the index returns fewer than k chunks (a very
selective filter, or vectors whose chunks were deleted) the search is repeated exactly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import asyncpg

from mahavishnu_assets.database.pool import Database
from mahavishnu_assets.errors import SearchError
from mahavishnu_assets.index.plan import SEARCH_PARAM, vector_type
from mahavishnu_assets.index.registry import space_search_info
from mahavishnu_assets.ingest.word_form import STOP_WORDS
from mahavishnu_assets.search.filters import SearchFilters, check_k, clean_query
from mahavishnu_assets.search.fusion import (
    asks_for_tests,
    is_test_path,
    looks_like_code,
    looks_like_identifier,
    rrf,
    spelled_names,
)
from mahavishnu_assets.search.sql import (
    Statement,
    definition_words_statement,
    prefix_statement,
    spelled_name_statement,
    text_statement,
    vector_statement,
)
from mahavishnu_assets.search.symbols import statement as symbol_statement
from mahavishnu_assets.settings import SearchSettings

logger = logging.getLogger(__name__)

Mode = Literal["vector", "text", "hybrid", "symbol"]
MODES: tuple[str, ...] = ("vector", "text", "hybrid", "symbol")
ITERATIVE_SCAN = {"hnsw": "hnsw.iterative_scan", "ivfflat": "ivfflat.iterative_scan"}
# Filter values change the best plan (a small repository: start from its chunks), so never a generic plan.
CUSTOM_PLANS = "SET LOCAL plan_cache_mode = force_custom_plan"
# Symbol matches at or above this score name the definition itself (see search.sql.SYMBOL_MATCHES).
NAMED_TIER = 0.65


@dataclass(frozen=True)
class Hit:
    chunk_id: int
    repo: str
    path: str
    start_line: int
    end_line: int
    language: str
    content: str
    score: float
    vector_rank: int | None = None
    text_rank: int | None = None
    # The qualified name of the innermost definition holding the chunk (None at module level or outside code);
    # in symbol mode the definition found, its `kind`, and start_line..end_line its part of the chunk.
    symbol: str | None = None
    kind: str | None = None

    def tie(self) -> tuple[str, str, int, int]:
        return (self.repo, self.path, self.start_line, self.chunk_id)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SearchResult:
    results: list[Hit]
    mode: str
    method: str = "exact"  # how the vector half ran: exact, ivfflat or hnsw
    search_params: dict[str, int] = field(default_factory=dict)
    exact_fallback: bool = False
    space_id: int | None = None
    notices: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "results": [h.to_dict() for h in self.results],
            "mode": self.mode,
            "method": self.method,
            "search_params": self.search_params,
            "exact_fallback": self.exact_fallback,
            "space_id": self.space_id,
            "notices": self.notices,
        }


def _hit(r: asyncpg.Record) -> Hit:
    return Hit(
        r["id"],
        r["repo"],
        r["path"],
        r["start_line"],
        r["end_line"],
        r["language"],
        r["content"],
        float(r["score"]),
        symbol=r["symbol"],
        kind=r.get("kind"),
    )


def _hits(rows: list[asyncpg.Record]) -> list[Hit]:
    return [_hit(r) for r in rows]


async def _repo_id(conn: asyncpg.Connection, filters: SearchFilters) -> tuple[int | None, bool]:
    """(id, found): an unknown repository name gives no results rather than an error."""
    if filters.repo is None:
        return None, True
    repo_id = await conn.fetchval("SELECT id FROM mahavishnu.repositories WHERE name = $1", filters.repo)
    return repo_id, repo_id is not None


async def _run(conn: asyncpg.Connection, statement: Statement) -> list[asyncpg.Record]:
    return await conn.fetch(statement.sql, *statement.args)


async def _exact_hits(
    conn: asyncpg.Connection,
    space_id: int,
    dims: int,
    vector: Any,
    k: int,
    filters: SearchFilters,
    repo_id: int | None,
) -> list[Hit]:
    if not filters.any:
        hits = _hits(await _run(conn, prefix_statement(space_id, vector, k, 2 * k + 10)))
        if len(hits) == k:
            return hits
    return _hits(await _run(conn, vector_statement(space_id, dims, vector, k, filters, repo_id, exact=True)))


async def _vector_hits(
    conn: asyncpg.Connection,
    space_id: int,
    vector: Any,
    k: int,
    filters: SearchFilters,
    repo_id: int | None,
    exact: bool,
    result: SearchResult,
) -> list[Hit]:
    info = await space_search_info(conn, space_id)
    if info is None:
        raise SearchError(
            f"Embedding space {space_id} does not exist", suggestion="Ingest a repository first."
        )
    dims = int(info["dimensions"])
    if hasattr(vector, "__len__") and len(vector) != dims:
        raise SearchError(
            f"The query vector has {len(vector)} dimensions; embedding space {space_id} has {dims}",
            suggestion="Embed the query with the model that embedded the corpus.",
        )
    if exact or not info["usable"] or vector_type(dims) is None:
        result.method = "exact"
        await conn.execute(CUSTOM_PLANS)
        return await _exact_hits(conn, space_id, dims, vector, k, filters, repo_id)
    method = str(info["method"])
    value = int(info["search_value"] or 0)
    if not value:  # built but never tuned (measurement failed): pgvector's starting points
        lists = int((info["params"] or {}).get("lists", 100))
        value = 40 if method == "hnsw" else max(1, round(lists**0.5))
    if method == "hnsw":
        value = max(value, k)  # HNSW returns at most ef_search rows per scan pass
    result.method = method
    param = str(info["search_param"] or SEARCH_PARAM[method])
    result.search_params = {param: value}
    # One round trip: custom plans (filter values matter), the tuned parameter, iterative scans for filters.
    await conn.execute(
        "SELECT set_config('plan_cache_mode', 'force_custom_plan', true), set_config($1, $2, true), "
        "set_config($3, 'relaxed_order', true)",
        param,
        str(value),
        ITERATIVE_SCAN[method],
    )
    hits = _hits(await _run(conn, vector_statement(space_id, dims, vector, k, filters, repo_id, exact=False)))
    if len(hits) < k:
        exact_hits = await _exact_hits(conn, space_id, dims, vector, k, filters, repo_id)
        if len(exact_hits) > len(hits):
            result.exact_fallback = True
            return exact_hits
    return hits


async def search(
    db: Database,
    *,
    mode: str = "hybrid",
    text: str | None = None,
    vector: Any = None,
    space_id: int | None = None,
    k: int = 10,
    filters: SearchFilters | None = None,
    exact: bool = False,
    candidates: int | None = None,
    fusion: SearchSettings | None = None,
) -> SearchResult:
    """Search chunks. Vector and hybrid modes need `vector` and `space_id`; text, hybrid and symbol need `text`
    (in symbol mode: a name or qualified name, looked up among definitions).

    Hybrid fuses the vector and lexical lists by weighted reciprocal rank (`fusion`); a query that looks like an
    identifier adds the definitions it names, first, and leans on lexical evidence; a question adds the
    definitions whose names its words spell ("get the color system": `color_system`) and those whose qualified
    names are made of its words, and ranks test code below the code it tests unless it speaks of tests."""
    if mode not in MODES:
        raise SearchError(
            f"Unknown search mode {mode!r}", suggestion="Use --mode vector, text, hybrid or symbol."
        )
    k = check_k(k)
    filters = (filters or SearchFilters()).validated()
    if mode == "symbol":
        if text is None:
            raise SearchError("A symbol search needs a name")
        return await _symbol_search(db, text, k, filters)
    if mode in ("vector", "hybrid") and (vector is None or space_id is None):
        raise SearchError(f"A {mode} search needs a query vector and its embedding space")
    if mode in ("text", "hybrid"):
        if text is None:
            raise SearchError(f"A {mode} search needs query text")
        text = clean_query(text)
    # Hybrid fuses deeper lists than it returns: a chunk ranked 30th by one signal and 2nd by the other wins.
    depth = k if mode != "hybrid" else min(1000, candidates or max(4 * k, 40))
    result = SearchResult(results=[], mode=mode, space_id=space_id)
    async with db.connection() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        repo_id, found = await _repo_id(conn, filters)
        if not found:
            result.notices.append(f"no repository named {filters.repo!r}")
            return result
        vector_hits: list[Hit] = []
        text_hits: list[Hit] = []
        symbol_hits: list[Hit] = []
        identifier = mode == "hybrid" and text is not None and looks_like_identifier(text)
        if identifier:
            assert text is not None
            await conn.execute(CUSTOM_PLANS)
            rows = await _run(conn, symbol_statement(text, depth, filters, repo_id, with_content=True))
            # The definitions the name itself names (exact, or ignoring case), not names it only begins.
            symbol_hits = [h for h in _symbol_hits(rows, filters) if h.score >= NAMED_TIER]
        f = fusion or SearchSettings()
        definition_hits: list[Hit] = []
        # A question, not a line of code: in `mode = console.color_system()` the names are calls, found as text.
        question = mode == "hybrid" and not identifier and text is not None and not looks_like_code(text)
        if question:
            assert text is not None
            names = spelled_names(text, STOP_WORDS) if f.name_weight > 0 else []
            if names:
                rows = await _run(conn, spelled_name_statement(names, depth, filters, repo_id))
                symbol_hits = _symbol_hits(rows, filters)
            if f.definition_weight > 0:
                rows = await _run(conn, definition_words_statement(text, depth, filters, repo_id))
                definition_hits = _symbol_hits(rows, filters)
        if mode in ("vector", "hybrid"):
            assert space_id is not None
            vector_hits = await _vector_hits(conn, space_id, vector, depth, filters, repo_id, exact, result)
        if mode in ("text", "hybrid"):
            assert text is not None
            if mode == "text":
                await conn.execute(CUSTOM_PLANS)
            text_hits = _hits(await _run(conn, text_statement(text, depth, filters, repo_id)))
    if mode == "vector":
        result.results = [_ranked(h, vector_rank=i) for i, h in enumerate(vector_hits[:k], 1)]
    elif mode == "text":
        result.results = [_ranked(h, text_rank=i) for i, h in enumerate(text_hits[:k], 1)]
    else:
        if identifier:
            weights = [f.identifier_symbol_weight, f.identifier_vector_weight, f.identifier_text_weight, 0.0]
        else:
            weights = [f.name_weight, f.vector_weight, f.text_weight, f.definition_weight]
        # A question asks for the code that does what it says, not for the tests that call it, unless it speaks
        # of tests; a name or a line of code is looked for wherever it is.
        demote_tests = question and f.test_weight != 1.0 and text is not None and not asks_for_tests(text)
        fused = rrf(
            [symbol_hits, vector_hits, text_hits, definition_hits],
            key=lambda h: h.chunk_id,
            tie=Hit.tie,
            k=f.rrf_k,
            limit=k,
            weights=weights,
            prior=(lambda h: f.test_weight if is_test_path(h.path) else 1.0) if demote_tests else None,
            scales=[None, None, None, _relative(definition_hits)],
        )
        result.results = [
            replace(h, score=round(score, 6), vector_rank=ranks[1], text_rank=ranks[2])
            for h, score, ranks in fused
        ]
    return result


def _relative(hits: list[Hit]) -> Callable[[Hit], float] | None:
    """Each hit's score as a share of the first's. The definition list's scores say how much of a name the
    question's words make: a definition matched half as well as the best adds half its rank's worth. On the
    tuning half, against rank alone, NL MRR@10 rose on six corpora of seven (sqlalchemy 0.440 -> 0.452, rich
    0.733 -> 0.748, flask 0.614 -> 0.648, httpx 0.757 -> 0.773, requests 0.778 -> 0.785, attrs 0.646 -> 0.671;
    click 0.596 -> 0.595). Replayed over the same lists, the square root of the share and its square, with the
    list weighed 1.0, 1.3 or 1.6, did less well on average."""
    top = hits[0].score if hits else 0.0
    if top <= 0:
        return None
    return lambda h: h.score / top


def _ranked(hit: Hit, *, vector_rank: int | None = None, text_rank: int | None = None) -> Hit:
    return replace(hit, vector_rank=vector_rank, text_rank=text_rank)


async def _symbol_search(db: Database, name: str, k: int, filters: SearchFilters) -> SearchResult:
    """Definitions by name (see `search.symbols`), each as its part of the chunk that holds its first line."""
    result = SearchResult(results=[], mode="symbol", method="symbol")
    statement = symbol_statement(name, k, filters, None, with_content=True)  # validates the name first
    async with db.connection() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        repo_id, found = await _repo_id(conn, filters)
        if not found:
            result.notices.append(f"no repository named {filters.repo!r}")
            return result
        await conn.execute(CUSTOM_PLANS)
        statement = symbol_statement(name, k, filters, repo_id, with_content=True)
        rows = await _run(conn, statement)
    result.results = _symbol_hits(rows, filters)
    return result


def _symbol_hits(rows: list[asyncpg.Record], filters: SearchFilters) -> list[Hit]:
    # Excluded chunks are left out after the lookup (a definition is found by name, not by chunk).
    return [
        replace(_hit(r), score=round(float(r["score"]), 6))
        for r in rows
        if r["id"] not in filters.exclude_chunk_ids
    ]
