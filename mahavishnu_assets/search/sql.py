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

RESULT_COLUMNS = "c.id, r.name AS repo, c.path, c.start_line, c.end_line, c.language, c.content"
TIE_ORDER = "r.name, c.path, c.start_line, c.id"


@dataclass(frozen=True)
class Statement:
    sql: str
    args: tuple[object, ...]


def _conditions(filters: SearchFilters, repo_id: int | None, first: int) -> tuple[str, list[object]]:
    """`AND ...` clauses on chunk alias `c`, with placeholders numbered from `first`."""
    parts: list[str] = []
    args: list[object] = []
    if filters.repo is not None:
        parts.append(f"c.repo_id = ${first + len(args)}")
        args.append(repo_id)
    if filters.path_prefix is not None:
        # starts_with compares literally: %, _ and backslashes in the prefix are plain characters.
        parts.append(f"starts_with(c.path, ${first + len(args)})")
        args.append(filters.path_prefix)
    if filters.language is not None:
        parts.append(f"c.language = ${first + len(args)}")
        args.append(filters.language)
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
