"""The search statements. Their text depends only on which filters are present, never on filter values.

Vectors live once per (space, content hash) while chunks may share a hash (the same text in many files or
repositories), so vector search ranks distinct hashes that have at least one chunk passing the filters
(`EXISTS`), then expands them into chunks. Every chunk of a hash has that hash's distance, so the top k chunks
are among the chunks of the top k hashes; `WITH TIES` keeps hashes tied at the cut (identical vectors of
different texts) so the repo/path/line tie order is applied to all of them.
"""

from __future__ import annotations

from dataclasses import dataclass

from mahavishnu_assets.index.plan import ann_distance, exact_distance
from mahavishnu_assets.search.filters import SearchFilters

RESULT_COLUMNS = "c.id, r.name AS repo, c.path, c.start_line, c.end_line, c.language, c.content, c.symbol"
TIE_ORDER = "r.name, c.path, c.start_line, c.id"


@dataclass(frozen=True)
class Statement:
    sql: str
    args: tuple[object, ...]


def _conditions(
    filters: SearchFilters, repo_id: int | None, first: int, alias: str = "c"
) -> tuple[str, list[object]]:
    """`AND ...` clauses on alias `c` (chunks; or `s`, symbols), with placeholders numbered from `first`."""
    assert alias in ("c", "s")
    parts: list[str] = []
    args: list[object] = []
    if filters.repo is not None:
        parts.append(f"{alias}.repo_id = ${first + len(args)}")
        args.append(repo_id)
    if filters.path_prefix is not None:
        # starts_with compares literally: %, _ and backslashes in the prefix are plain characters.
        parts.append(f"starts_with({alias}.path, ${first + len(args)})")
        args.append(filters.path_prefix)
    if filters.language is not None:
        parts.append(f"{alias}.language = ${first + len(args)}")
        args.append(filters.language)
    if filters.exclude_chunk_ids and alias == "c":  # symbol rows are not chunks; see core._symbol_search
        parts.append(f"c.id <> ALL(${first + len(args)}::bigint[])")
        args.append(list(filters.exclude_chunk_ids))
    return "".join(f" AND {p}" for p in parts), args


def vector_statement(
    space_id: int,
    dimensions: int,
    vector: object,
    k: int,
    filters: SearchFilters,
    repo_id: int | None,
    *,
    exact: bool,
) -> Statement:
    distance = exact_distance("$1") if exact else ann_distance(dimensions, "$1")
    conds, extra = _conditions(filters, repo_id, 3)
    sql = f"""WITH hits AS MATERIALIZED (
    SELECT e.content_hash, {distance} AS distance
      FROM mahavishnu.embeddings e
     WHERE e.space_id = {int(space_id)}
       AND EXISTS (SELECT 1 FROM mahavishnu.chunks c WHERE c.content_hash = e.content_hash{conds})
     ORDER BY {distance}
     FETCH FIRST $2 ROWS WITH TIES
)
SELECT {RESULT_COLUMNS}, (1 - h.distance)::float8 AS score
  FROM hits h
  JOIN mahavishnu.chunks c ON c.content_hash = h.content_hash
  JOIN mahavishnu.repositories r ON r.id = c.repo_id
 WHERE true{conds}
 ORDER BY h.distance, {TIE_ORDER}
 LIMIT $2"""  # noqa: S608 - only integers and allowlisted SQL are interpolated
    return Statement(sql, (vector, k, *extra))


def prefix_statement(space_id: int, vector: object, k: int, depth: int) -> Statement:
    """Exact search without filters, fast: the `depth` nearest hashes (with ties), then their chunks.

    Every hash outside that prefix is strictly farther than every hash inside, so when the prefix yields k
    chunks they are the true top k. It can yield fewer only when vectors without chunks crowd the prefix;
    the caller then runs the full statement. (Joining chunks before ranking, as the full statement does,
    costs several times the plain scan on large spaces.)
    """
    distance = exact_distance("$1")
    sql = f"""WITH hits AS MATERIALIZED (
    SELECT e.content_hash, {distance} AS distance
      FROM mahavishnu.embeddings e
     WHERE e.space_id = {int(space_id)}
     ORDER BY {distance}
     FETCH FIRST $3 ROWS WITH TIES
)
SELECT {RESULT_COLUMNS}, (1 - h.distance)::float8 AS score
  FROM hits h
  JOIN mahavishnu.chunks c ON c.content_hash = h.content_hash
  JOIN mahavishnu.repositories r ON r.id = c.repo_id
 ORDER BY h.distance, {TIE_ORDER}
 LIMIT $2"""  # noqa: S608 - only integers and allowlisted SQL are interpolated
    return Statement(sql, (vector, k, depth))


# Three views of the query: all words as a phrase (an identifier split into words is a phrase), all words
# anywhere, any word. Matching uses "any" (the GIN index); the score ranks phrase over all over any.
TEXT_QUERY = """SELECT phraseto_tsquery('english', w) AS phrase_q, plainto_tsquery('english', w) AS all_q,
       replace(plainto_tsquery('english', w)::text, ' & ', ' | ')::tsquery AS any_q
  FROM (SELECT mahavishnu.code_words($1) AS w) words"""


def text_statement(text: str, k: int, filters: SearchFilters, repo_id: int | None) -> Statement:
    conds, extra = _conditions(filters, repo_id, 3)
    sql = f"""WITH q AS MATERIALIZED ({TEXT_QUERY})
SELECT {RESULT_COLUMNS},
       (2 * (c.search_terms @@ q.phrase_q)::int + (c.search_terms @@ q.all_q)::int
        + ts_rank(c.search_terms, q.any_q))::float8 AS score
  FROM q
  JOIN mahavishnu.chunks c ON c.search_terms @@ q.any_q
  JOIN mahavishnu.repositories r ON r.id = c.repo_id
 WHERE true{conds}
 ORDER BY score DESC, {TIE_ORDER}
 LIMIT $2"""  # noqa: S608 - only allowlisted SQL is interpolated
    return Statement(sql, (text, k, *extra))


# Definitions matching a name, best first: the qualified name exactly as written (1.0), the name or a dotted
# tail of the qualified name as written (0.9: `filter`, or `Inner.run` for `Outer.Inner.run`), the same
# ignoring case (0.8, 0.7), then names or qualified names starting with it, as written (0.5) or ignoring case
# (0.4). Within a tier shorter qualified names come first (less than the gap between tiers). Every candidate
# passes an indexed condition: a case-insensitive prefix of the name or qualified name, or the last dotted part
# as the name. $1 the name, $2 it as a LIKE prefix pattern (escaped), $3 its last dotted part, $4 k.
SYMBOL_MATCHES = """SELECT s.id, s.file_id, s.repo_id, s.path, s.language, s.name, s.qualified_name, s.kind,
       s.start_line, s.end_line,
       (CASE WHEN s.qualified_name = $1 THEN 1.0
             WHEN s.name = $1 OR right(s.qualified_name, length($1) + 1) = '.' || $1 THEN 0.9
             WHEN lower(s.qualified_name) = lower($1) THEN 0.8
             WHEN lower(s.name) = lower($1)
                  OR right(lower(s.qualified_name), length($1) + 1) = '.' || lower($1) THEN 0.7
             WHEN s.name LIKE $2 OR s.qualified_name LIKE $2 THEN 0.5
             ELSE 0.4 END
        - least(length(s.qualified_name), 99) / 10000.0)::float8 AS score
  FROM mahavishnu.symbols s
 WHERE (lower(s.name) LIKE lower($2) OR lower(s.qualified_name) LIKE lower($2)
        OR (lower(s.name) = lower($3) AND right(lower(s.qualified_name), length($1) + 1) = '.' || lower($1)))"""


def symbol_statement(
    name: str, pattern: str, last: str, k: int, filters: SearchFilters, repo_id: int | None
) -> Statement:
    """Definitions matching `name` (see SYMBOL_MATCHES), with their repository."""
    conds, extra = _conditions(filters, repo_id, 5, alias="s")
    sql = f"""SELECT m.*, r.name AS repo FROM ({SYMBOL_MATCHES}{conds}) m
  JOIN mahavishnu.repositories r ON r.id = m.repo_id
 ORDER BY m.score DESC, r.name, m.path, m.start_line, m.id
 LIMIT $4"""  # noqa: S608 - only allowlisted SQL is interpolated
    return Statement(sql, (name, pattern, last, k, *extra))


def symbol_chunk_statement(
    name: str, pattern: str, last: str, k: int, filters: SearchFilters, repo_id: int | None
) -> Statement:
    """Search results for `--mode symbol`: each matching definition as the part of the chunk holding its first
    line that belongs to it (from its first line to its end or the chunk's), exact lines as stored."""
    inner = symbol_statement(name, pattern, last, k, filters, repo_id)
    sql = f"""SELECT c.id, d.repo, d.path, d.start_line, least(d.end_line, c.end_line) AS end_line, d.language,
       array_to_string((string_to_array(c.content, E'\\n'))
                       [d.start_line - c.start_line + 1 : least(d.end_line, c.end_line) - c.start_line + 1],
                       E'\\n') AS content,
       d.qualified_name AS symbol, d.kind, d.score
  FROM ({inner.sql}) d
  JOIN LATERAL (SELECT c.id, c.start_line, c.end_line, c.content FROM mahavishnu.chunks c
                 WHERE c.file_id = d.file_id AND c.start_line <= d.start_line AND c.end_line >= d.start_line
                 ORDER BY c.start_line DESC LIMIT 1) c ON true
 ORDER BY d.score DESC, d.repo, d.path, d.start_line, d.id"""  # noqa: S608 - only allowlisted SQL is interpolated
    return Statement(sql, inner.args)
