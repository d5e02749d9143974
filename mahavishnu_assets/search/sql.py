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


# Text ranking is Okapi BM25 (Robertson et al., TREC-3) over the stored `search_terms`, computed in the
# statement from collection statistics that triggers keep exact (migration 0042). ts_rank, used before, has no
# document frequency: a word in most chunks (`self`, `field`) weighed as much as a rare identifier word. BM25
# is the standard lexical baseline and needs nothing beyond PostgreSQL:
# - the query's lexemes come from the same functions as the chunks' (code_words, then the `english` parser);
# - idf = ln(1 + (N - df + 0.5) / (df + 0.5)) per lexeme. Filtered to one repository, N and df are that
#   repository's: its ranking is what it would be stored alone, whatever else is ingested. Otherwise they are
#   the sums over every repository. (Path and language filters use the same figures as without them.)
# - tf is ts_rank_cd of the one lexeme, which with positions is the sum of its occurrences' weights: a path
#   word (weight A) counts PATH_WEIGHT content occurrences and a word of the enclosing definition's name
#   (weight B, migration 0044) or of a definition beginning in the chunk (migration 0045) SYMBOL_WEIGHT, field
#   weights as in BM25F. On the tuning half, SYMBOL_WEIGHT 3 beat 2 on described functions (MRR@10 rich
#   0.540 / 0.533, sqlalchemy 0.250 / 0.241); 4 with PATH_WEIGHT 4 was no better;
# - length is the number of distinct lexemes (see the migration): tf (K1 + 1) / (tf + K1 (1 - B + B len/avg)).
# A chunk holding the query's words as a phrase (an identifier like get_random_secret_key or QuerySet.filter,
# split into its words, or a quoted sentence) gets PHRASE_BOOST times the sum of the query's idf on top.
# Candidates come from the GIN index through an OR of the rarest lexemes, taken in order of df while the df
# of those before sum to less than MATCH_BUDGET (10 per result asked, at least): a chunk holding none of them
# has only words of high df, each worth little, and scoring them all would cost time in proportion to the
# corpus. Every lexeme still counts in the score of every candidate. Queries keep their MAX_QUERY_TERMS
# rarest lexemes (as Lucene's MoreLikeThis keeps its top terms): a pasted file stays a bounded query.
K1 = 1.2
B = 0.75
PATH_WEIGHT = 3
SYMBOL_WEIGHT = 3
PHRASE_BOOST = 1.0
MATCH_BUDGET = 2000
MAX_QUERY_TERMS = 64
# A lexeme as a one-lexeme tsquery: quoted, with quotes and backslashes doubled (tsquery input syntax).
_LEXEME_QUERY = "('''' || replace(replace(u.lexeme, '\\', '\\\\'), '''', '''''') || '''')::tsquery"


def _text_query(repo: str) -> str:
    """CTEs `terms` (each query lexeme: its tsquery, df, idf) and `q` (one row: the OR to match, the phrase,
    its boost, the average length). `repo` is the placeholder of the repository id, NULL for all."""
    return f"""scope AS MATERIALIZED (
    SELECT coalesce(sum(s.chunks), 0)::float8 AS n,
           coalesce(sum(s.lexemes)::float8 / nullif(sum(s.chunks), 0), 1) AS avglen
      FROM mahavishnu.lexical_repo_stats s
     WHERE {repo}::bigint IS NULL OR s.repo_id = {repo}
), words AS MATERIALIZED (
    SELECT w, to_tsvector('english', w) AS v FROM (SELECT mahavishnu.code_words($1) AS w) q
), terms AS MATERIALIZED (
    SELECT t.lexeme, t.query, t.df, ln(1 + (scope.n - t.df + 0.5) / (t.df + 0.5)) AS idf,
           sum(t.df) OVER (ORDER BY t.df, t.lexeme ROWS UNBOUNDED PRECEDING) - t.df AS rarer_df
      FROM scope, (
        SELECT u.lexeme, {_LEXEME_QUERY} AS query,
               (SELECT coalesce(sum(d.df), 0) FROM mahavishnu.lexical_terms d
                 WHERE d.lexeme = u.lexeme COLLATE "C"
                   AND ({repo}::bigint IS NULL OR d.repo_id = {repo}))::float8 AS df
          FROM words, unnest(tsvector_to_array(words.v)) AS u(lexeme)
         ORDER BY df, u.lexeme
         LIMIT {MAX_QUERY_TERMS}) t
), q AS MATERIALIZED (
    SELECT (SELECT string_agg(t.query::text, ' | ')::tsquery FROM terms t
             WHERE t.rarer_df < greatest({MATCH_BUDGET}, 10 * $2)) AS match_q,
           CASE WHEN length(words.v) BETWEEN 2 AND {MAX_QUERY_TERMS}
                THEN phraseto_tsquery('english', words.w) END AS phrase_q,
           (SELECT {PHRASE_BOOST} * coalesce(sum(t.idf), 0) FROM terms t) AS boost,
           scope.avglen
      FROM words, scope
)"""  # noqa: S608 - only a placeholder and numeric constants are interpolated


def text_statement(text: str, k: int, filters: SearchFilters, repo_id: int | None) -> Statement:
    conds, extra = _conditions(filters, repo_id, 3)
    repo = f"${3 + len(extra)}"
    # ts_rank_cd's weights for D, C, B, A (at most 1 each): content words 1/PATH_WEIGHT, the enclosing
    # definition's name SYMBOL_WEIGHT/PATH_WEIGHT, path words 1.
    content = f"{1 / PATH_WEIGHT:.6f}"
    symbol = f"{SYMBOL_WEIGHT / PATH_WEIGHT:.6f}"
    weights = f"'{{{content},{content},{symbol},1}}'::float4[]"
    # A lexeme's tf is read only from the chunks holding it (`@@`, cheap; most candidates hold one or two
    # of the query's lexemes). `v` is the tsvector detoasted once per chunk instead of once per function call.
    bm25 = f"""(SELECT coalesce(sum(t.idf * f.tf * {K1 + 1}
                               / (f.tf + {K1} * ({1 - B} + {B} * length(d.v) / q.avglen))), 0)
                  FROM terms t,
                       LATERAL (SELECT {PATH_WEIGHT} * ts_rank_cd({weights}, d.v, t.query) AS tf) f
                 WHERE d.v @@ t.query)"""  # noqa: S608 - numeric constants only
    sql = f"""WITH {_text_query(repo)}
SELECT {RESULT_COLUMNS}, s.score
  FROM q
  JOIN mahavishnu.chunks c ON c.search_terms @@ q.match_q
  JOIN mahavishnu.repositories r ON r.id = c.repo_id
  CROSS JOIN LATERAL (
       SELECT ({bm25} + CASE WHEN d.v @@ q.phrase_q THEN q.boost ELSE 0 END)::float8 AS score
         FROM (SELECT c.search_terms || ''::tsvector AS v OFFSET 0) d) s
 WHERE true{conds}
 ORDER BY s.score DESC, {TIE_ORDER}
 LIMIT $2"""  # noqa: S608 - only allowlisted SQL and constants are interpolated
    # The statistics are the filtered repository's, as its chunks are the only ones ranked.
    return Statement(sql, (text, k, *extra, repo_id if filters.repo is not None else None))


def _holding_chunk(definition: str, excluded: str | None = None) -> str:
    """The chunk holding the first line of the definition row `definition` (an alias): the last to start at or
    before it, as chunks of a file never overlap. With `excluded`, the placeholder of chunk ids to leave out, the
    definition's first chunk that is not left out: a definition whose first lines were excluded still answers by
    the rest of it (the retrieval-quality measure excludes the chunk of a docstring it searches with)."""
    assert definition in ("s", "d")
    if excluded is not None:
        return f"""SELECT c.* FROM mahavishnu.chunks c
                 WHERE c.file_id = {definition}.file_id AND c.start_line <= {definition}.end_line
                   AND c.end_line >= {definition}.start_line AND c.id <> ALL({excluded}::bigint[])
                 ORDER BY c.start_line LIMIT 1"""  # noqa: S608 - an allowlisted alias and a placeholder only
    return f"""SELECT c.* FROM mahavishnu.chunks c
                 WHERE c.file_id = {definition}.file_id AND c.start_line <= {definition}.start_line
                   AND c.end_line >= {definition}.start_line
                 ORDER BY c.start_line DESC LIMIT 1"""  # noqa: S608 - an allowlisted alias only


def _excluded(filters: SearchFilters, args: list[object], first: int) -> tuple[str | None, list[object]]:
    """The placeholder of the excluded chunk ids (appended to `args`, numbered from `first`), or None."""
    if not filters.exclude_chunk_ids:
        return None, args
    return f"${first + len(args)}", [*args, list(filters.exclude_chunk_ids)]


def spelled_name_statement(
    names: list[str], k: int, filters: SearchFilters, repo_id: int | None
) -> Statement:
    """Chunks holding the first line of a definition whose name a question spells (`search.fusion.spelled_names`:
    the name lower-cased without underscores is one of `names`), the longer the spelling (the earlier in `names`)
    the better. The expression index of migration 0045 finds them."""
    conds, extra = _conditions(filters, repo_id, 3, alias="s")
    excluded, extra = _excluded(filters, extra, 3)
    sql = f"""SELECT {RESULT_COLUMNS},
       (1.0 / array_position($1::text[], lower(replace(s.name, '_', ''))))::float8 AS score
  FROM mahavishnu.symbols s
  JOIN LATERAL ({_holding_chunk("s", excluded)}) c ON true
  JOIN mahavishnu.repositories r ON r.id = c.repo_id
 WHERE lower(replace(s.name, '_', '')) = ANY($1::text[]){conds}
 ORDER BY score DESC, {TIE_ORDER}
 LIMIT $2"""  # noqa: S608 - only allowlisted SQL is interpolated
    return Statement(sql, (names, k, *extra))


def definition_words_statement(text: str, k: int, filters: SearchFilters, repo_id: int | None) -> Statement:
    """Chunks holding the first line of the definitions whose qualified names are made of a question's words
    (`symbols.words`, migration 0046), best first. A definition scores the idf of the query's lexemes its name
    holds (the chunks' BM25 statistics: a word common in code says little) times the share of its name's words
    they are, counting one word more: `Console.is_terminal` matches "check if the console is writing to a
    terminal" in full (2 of 2 words, 2/3), `Console.print` only in part. On the tuning half (with idf among the
    definitions, in a first version) this share beat the share of the name without its class, that share
    squared, and both shares multiplied (MRR@10 rich 0.730 / 0.726 / 0.715 / 0.712, sqlalchemy 0.411 / 0.374 /
    0.359 / 0.385). The chunks' idf, kept up to date already, scores about the same (0.724, 0.404).
    Candidates hold one of the query's rarer lexemes, as in text_statement (MATCH_BUDGET): on sqlalchemy's 41,000
    definitions a question of common words ("test get set init name type value") took 62 ms without that
    bound, 8 ms with it, and the tuning half's figures did not change."""
    conds, extra = _conditions(filters, repo_id, 3, alias="s")
    repo = f"${3 + len(extra)}"
    extra = [*extra, repo_id if filters.repo is not None else None]
    excluded, extra = _excluded(filters, extra, 3)
    sql = f"""WITH {_text_query(repo)}, found AS MATERIALIZED (
    SELECT s.file_id, s.start_line, s.end_line, sum(t.idf) * count(*) / (cardinality(s.words) + 1) AS score
      FROM mahavishnu.symbols s
      JOIN terms t ON t.lexeme = ANY(s.words)
     WHERE s.words && (SELECT array_agg(t2.lexeme) FROM terms t2
                        WHERE t2.rarer_df < greatest({MATCH_BUDGET}, 10 * $2)){conds}
     GROUP BY s.id
     ORDER BY score DESC, s.id
     LIMIT $2
)
SELECT {RESULT_COLUMNS}, s.score::float8 AS score
  FROM found s
  JOIN LATERAL ({_holding_chunk("s", excluded)}) c ON true
  JOIN mahavishnu.repositories r ON r.id = c.repo_id
 ORDER BY s.score DESC, {TIE_ORDER}"""  # noqa: S608 - only allowlisted SQL is interpolated
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
  JOIN LATERAL ({_holding_chunk("d")}) c ON true
 ORDER BY d.score DESC, d.repo, d.path, d.start_line, d.id"""  # noqa: S608 - only allowlisted SQL is interpolated
    return Statement(sql, inner.args)
