"""Definitions by name: exact, then ignoring case, then by prefix, over names and qualified names.

`find_symbols` answers "where is X defined" (the MCP `find_symbol` tool, `mahavishnu search --mode symbol`):
`filter`, `QuerySet.filter`, `QuerySet.fil`, `Router::handle` (Rust and C++ separators read as dots).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import asyncpg

from mahavishnu_assets.errors import SearchError
from mahavishnu_assets.search.filters import SearchFilters, check_k, clean_query
from mahavishnu_assets.search.sql import Statement, symbol_chunk_statement, symbol_statement

# Longer than any real qualified name; a longer "name" is a mistake or an attack, refused with a clear error.
MAX_NAME_CHARS = 500


@dataclass(frozen=True)
class SymbolHit:
    repo: str
    path: str
    start_line: int
    end_line: int
    kind: str
    symbol: str  # the qualified name
    name: str
    language: str
    score: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SymbolQuery:
    """A name as looked up: normalized, its LIKE prefix pattern and its last dotted part."""

    name: str
    pattern: str
    last: str


def symbol_query(name: str) -> SymbolQuery:
    """Normalize a name (`a::b`, `a#b` -> `a.b`; a trailing `()` dropped) or raise SearchError."""
    if not isinstance(name, str):
        raise SearchError(f"A symbol name must be text, got {type(name).__name__}")
    text = clean_query(name).strip()
    if len(text) > MAX_NAME_CHARS:
        raise SearchError(
            f"The symbol name is {len(text)} characters long (at most {MAX_NAME_CHARS})",
            suggestion="Pass a function, class or method name, such as `QuerySet.filter`.",
        )
    text = text.replace("::", ".").replace("#", ".")
    if text.endswith("()"):
        text = text[:-2]
    text = text.strip(". \t")
    if not text:
        raise SearchError(
            "The symbol name is empty", suggestion="Pass a name, such as `filter` or `QuerySet.filter`."
        )
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return SymbolQuery(text, escaped + "%", text.rsplit(".", 1)[-1])


async def _repo_id(conn: asyncpg.Connection, filters: SearchFilters) -> tuple[int | None, bool]:
    if filters.repo is None:
        return None, True
    repo_id = await conn.fetchval("SELECT id FROM mahavishnu.repositories WHERE name = $1", filters.repo)
    return repo_id, repo_id is not None


def statement(
    name: str, k: int, filters: SearchFilters, repo_id: int | None, *, with_content: bool
) -> Statement:
    query = symbol_query(name)
    build = symbol_chunk_statement if with_content else symbol_statement
    return build(query.name, query.pattern, query.last, k, filters, repo_id)


async def find_symbols(
    conn: asyncpg.Connection,
    name: str,
    repo: str | None = None,
    k: int = 20,
    *,
    filters: SearchFilters | None = None,
) -> list[SymbolHit]:
    """Definitions matching `name`, best first (see `search.sql.SYMBOL_MATCHES`); `repo` limits to one
    repository (an unknown one gives no results)."""
    k = check_k(k)
    filters = (filters or SearchFilters()).validated()
    if repo is not None:
        filters = SearchFilters(
            repo=repo, path_prefix=filters.path_prefix, language=filters.language
        ).validated()
    repo_id, found = await _repo_id(conn, filters)
    if not found:
        return []
    hits = await _lookup(conn, name, k, filters, repo_id)
    if hits or "." not in symbol_query(name).name:
        return hits
    # `server.parse_config`, `app.server.HTTPServer.serve`: the leading parts may name the module (the file's
    # path) rather than an enclosing definition.
    parts = symbol_query(name).name.split(".")
    for cut in range(1, len(parts)):
        module, rest = parts[:cut], ".".join(parts[cut:])
        candidates = await _lookup(conn, rest, MAX_MODULE_CANDIDATES, filters, repo_id)
        within = [
            h
            for h in candidates
            if h.symbol.lower() == rest.lower() and module_parts(h.path)[-len(module) :] == module
        ]
        if within:
            return within[:k]
    return []


# Definitions of the same name looked at when a module qualifies it (`server.parse_config`).
MAX_MODULE_CANDIDATES = 100


def module_parts(path: str) -> list[str]:
    """`app/server.py` -> ['app', 'server']: the path as a dotted module name (`__init__` names its package)."""
    parts = path.rsplit(".", 1)[0].split("/") if "." in path.rsplit("/", 1)[-1] else path.split("/")
    return parts[:-1] if parts and parts[-1] in ("__init__", "mod", "index") else parts


async def _lookup(
    conn: asyncpg.Connection, name: str, k: int, filters: SearchFilters, repo_id: int | None
) -> list[SymbolHit]:
    prepared = statement(name, k, filters, repo_id, with_content=False)
    rows = await conn.fetch(prepared.sql, *prepared.args)
    return [
        SymbolHit(
            r["repo"],
            r["path"],
            r["start_line"],
            r["end_line"],
            r["kind"],
            r["qualified_name"],
            r["name"],
            r["language"],
            round(float(r["score"]), 6),
        )
        for r in rows
    ]
