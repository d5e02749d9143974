"""Filter values and query text are data, never SQL: property tests over hostile strings."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mahavishnu_assets.database.pool import Database
from mahavishnu_assets.errors import SearchError
from mahavishnu_assets.index.synthetic import add_chunks, content_hash, synthetic_corpus
from mahavishnu_assets.search.core import search
from mahavishnu_assets.search.filters import SearchFilters
from mahavishnu_assets.search.sql import text_statement, vector_statement

HOSTILE = [
    "'",
    "''",
    "\\",
    "%",
    "_",
    "--",
    "'; DROP TABLE mahavishnu.chunks; --",
    '" OR 1=1 --',
    "$1",
    "$$",
    "a\x00b",
    "日本語/パス",
    "🙂",
    "src/%_\\",
    ") OR (1=1",
    "E'\\x27'",
    "/* */",
    ":name",
    "%s",
    "{}",
]
values = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=40))
filters = st.builds(
    SearchFilters,
    repo=st.none() | values,
    path_prefix=st.none() | values,
    language=st.none() | values,
)


@settings(max_examples=300, deadline=None)
@given(a=filters, b=filters)
def test_statement_text_depends_only_on_which_filters_are_present(a: SearchFilters, b: SearchFilters) -> None:
    present = lambda f: (f.repo is not None, f.path_prefix is not None, f.language is not None)  # noqa: E731
    vector = np.zeros(8, dtype=np.float32)
    for exact in (True, False):
        sa = vector_statement(1, 8, vector, 10, a, 5, exact=exact)
        sb = vector_statement(1, 8, vector, 10, b, 5, exact=exact)
        assert (sa.sql == sb.sql) == (present(a) == present(b))
        # The values travel as bind parameters (the repository as its id).
        assert [v for v in (a.path_prefix, a.language) if v is not None] == [x for x in sa.args[2:] if x != 5]
    ta = text_statement("q", 10, a, 5)
    tb = text_statement("other", 10, b, 5)
    assert (ta.sql == tb.sql) == (present(a) == present(b))


async def _corpus(db: Database) -> tuple[int, np.ndarray]:
    async with db.connection() as conn:
        space_id, vectors, _ = await synthetic_corpus(conn, count=200, dimensions=16, repos={"it's": 40})
        # Stored values that look like SQL and LIKE patterns, so filters have something tricky to match.
        await add_chunks(
            conn,
            "'; DROP TABLE mahavishnu.chunks; --",
            "src/%_\\/x.py",
            [("x", content_hash(3, b"synthetic"))],
        )
        await add_chunks(
            conn, "日本語", "日本語/パス.py", [("y", content_hash(4, b"synthetic"))], language="🙂"
        )
    return space_id, vectors


def _matches(hit: object, f: SearchFilters) -> bool:
    return (
        (f.repo is None or hit.repo == f.repo)  # type: ignore[attr-defined]
        and (f.path_prefix is None or hit.path.startswith(f.path_prefix))  # type: ignore[attr-defined]
        and (f.language is None or hit.language == f.language)  # type: ignore[attr-defined]
    )


async def test_hostile_filters_and_queries_never_break_a_search(db: Database) -> None:
    space_id, vectors = await _corpus(db)
    async with db.connection() as conn:
        before = await conn.fetchval("SELECT count(*) FROM mahavishnu.chunks")

    # Hypothesis draws the cases (synchronously); each then runs on this test's event loop and pool.
    examples: list[tuple[SearchFilters, str, str, bool]] = []

    @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
    @given(f=filters, text=values, mode=st.sampled_from(["vector", "text", "hybrid"]), exact=st.booleans())
    @example(
        f=SearchFilters(repo="'; DROP TABLE mahavishnu.chunks; --"), text="x", mode="vector", exact=False
    )
    @example(f=SearchFilters(path_prefix="src/%_\\"), text="--", mode="hybrid", exact=True)
    @example(
        f=SearchFilters(repo="日本語", path_prefix="日本語/", language="🙂"),
        text="'",
        mode="text",
        exact=False,
    )
    @example(f=SearchFilters(path_prefix="src/%"), text="%", mode="vector", exact=True)
    @example(f=SearchFilters(language="a\x00b"), text="x", mode="text", exact=False)
    def collect(f: SearchFilters, text: str, mode: str, exact: bool) -> None:
        examples.append((f, text, mode, exact))

    collect()
    assert len(examples) >= 100
    matched_something = 0
    for f, text, mode, exact in examples:
        has_nul = any("\x00" in (v or "") for v in (f.repo, f.path_prefix, f.language))
        try:
            result = await search(
                db, mode=mode, text=text, vector=vectors[0], space_id=space_id, k=20, filters=f, exact=exact
            )
        except SearchError as exc:
            assert has_nul and "NUL" in exc.message, exc.message
            continue
        assert not has_nul
        assert all(_matches(h, f.validated()) for h in result.results)
        matched_something += bool(result.results and f.validated().any)
    assert matched_something >= 2  # the examples above do match the tricky stored values
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM mahavishnu.chunks") == before
