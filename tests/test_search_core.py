"""Vector, text and hybrid search on real PostgreSQL: ANN vs exact, duplicates, filters, identifiers."""

from __future__ import annotations

import numpy as np
import pytest

from mahavishnu_assets.database.pool import Database
from mahavishnu_assets.errors import SearchError
from mahavishnu_assets.index.maintenance import refresh_space
from mahavishnu_assets.index.registry import spaces
from mahavishnu_assets.index.synthetic import add_chunks, content_hash, queries_near, synthetic_corpus
from mahavishnu_assets.ingest.local_embed import HashingEmbedder
from mahavishnu_assets.search.core import search
from mahavishnu_assets.search.filters import SearchFilters
from mahavishnu_assets.search.sql import text_statement
from mahavishnu_assets.settings import Settings

DIMS = 48


def index_settings(method: str) -> Settings:
    return Settings(index={"min_rows_for_index": 1000, "recall_sample_queries": 20, "method": method})


def order_key(hit: object) -> tuple[float, str, str, int]:
    return (-round(hit.score, 9), hit.repo, hit.path, hit.start_line)  # type: ignore[attr-defined]


async def corpus(
    db: Database, repos: dict[str, int] | None = None, count: int = 3000
) -> tuple[int, np.ndarray]:
    async with db.connection() as conn:
        space_id, vectors, _ = await synthetic_corpus(conn, count=count, dimensions=DIMS, repos=repos)
    return space_id, vectors


async def build(db: Database, space_id: int, method: str) -> dict:
    async with db.connection() as conn:
        space = next(s for s in await spaces(conn) if s.id == space_id)
    return await refresh_space(db, index_settings(method), space)


@pytest.mark.parametrize("method", ["hnsw", "ivfflat"])
async def test_ann_search_agrees_with_exact_and_uses_the_tuned_parameter(db: Database, method: str) -> None:
    space_id, vectors = await corpus(db)
    report = await build(db, space_id, method)
    queries = queries_near(vectors, 20, seed=5)
    overlap = 0.0
    for q in queries:
        ann = await search(db, mode="vector", vector=q, space_id=space_id, k=10)
        exact = await search(db, mode="vector", vector=q, space_id=space_id, k=10, exact=True)
        assert ann.method == method and exact.method == "exact"
        assert ann.search_params == report["search_params"] or method == "hnsw"
        assert len(ann.results) == len(exact.results) == 10
        assert [order_key(h) for h in exact.results] == sorted(order_key(h) for h in exact.results)
        overlap += len({h.chunk_id for h in ann.results} & {h.chunk_id for h in exact.results}) / 10
    assert overlap / len(queries) >= 0.9


async def test_one_content_hash_in_many_chunks_returns_every_chunk_in_tie_order(db: Database) -> None:
    space_id, vectors = await corpus(db, count=1200)
    shared = content_hash(7, b"synthetic")  # chunk 7's text, now also in three other files
    async with db.connection() as conn:
        for repo, path in (("zeta", "a.py"), ("alpha", "z.py"), ("alpha", "b.py")):
            await add_chunks(conn, repo, path, [("copy of chunk 7", shared)])
    await build(db, space_id, "hnsw")
    for exact in (False, True):
        result = await search(db, mode="vector", vector=vectors[7], space_id=space_id, k=3, exact=exact)
        assert [(h.repo, h.path) for h in result.results] == [
            ("alpha", "b.py"),
            ("alpha", "z.py"),
            ("main", "src/module_0.py"),
        ]
        assert result.results[0].score == pytest.approx(1.0, abs=1e-5)
        five = await search(db, mode="vector", vector=vectors[7], space_id=space_id, k=5, exact=exact)
        assert [(h.repo, h.path) for h in five.results][:4] == [
            ("alpha", "b.py"),
            ("alpha", "z.py"),
            ("main", "src/module_0.py"),
            ("zeta", "a.py"),
        ]


async def test_exact_search_skips_vectors_whose_chunks_are_gone(db: Database) -> None:
    """The embedding cache outlives deleted files: the nearest vectors may have no chunk at all."""
    space_id, vectors = await corpus(db, count=1200)
    query = queries_near(vectors, 1, seed=11)[0]
    order = np.argsort(-(vectors @ query))
    gone = [content_hash(int(i), b"synthetic") for i in order[:40]]
    async with db.connection() as conn:
        await conn.execute("DELETE FROM mahavishnu.chunks WHERE content_hash = ANY($1::bytea[])", gone)
    result = await search(db, mode="vector", vector=query, space_id=space_id, k=10, exact=True)
    want = [f"chunk {int(i)} of main" for i in order[40:50]]
    assert [h.content for h in result.results] == want


@pytest.mark.parametrize("method", ["hnsw", "ivfflat"])
async def test_filtered_search_for_a_small_repo_still_returns_k(db: Database, method: str) -> None:
    space_id, vectors = await corpus(db, repos={"tiny": 12, "mid": 300})
    await build(db, space_id, method)
    # Queries near the big repository's vectors: the index's first candidates are mostly filtered out, so
    # the iterative scan must go on (or the planner start from the repository's few chunks).
    for repo in ("tiny", "mid"):
        found = 0
        for q in queries_near(vectors[500:], 4, seed=9):
            only = SearchFilters(repo=repo)
            result = await search(db, mode="vector", vector=q, space_id=space_id, k=10, filters=only)
            exact = await search(
                db, mode="vector", vector=q, space_id=space_id, k=10, filters=only, exact=True
            )
            assert len(result.results) == 10 and not result.exact_fallback
            assert {h.repo for h in result.results} == {repo}
            found += len({h.chunk_id for h in result.results} & {h.chunk_id for h in exact.results})
        assert found / 40 >= 0.85  # recall@10 against exact, restricted to the repository


async def test_too_few_ann_results_fall_back_to_exact(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """pgvector's iterative scan stops after hnsw.max_scan_tuples; when the index path comes back short of k
    (a filter it could not satisfy in time, or vectors whose chunks are gone), the exact search answers."""
    from mahavishnu_assets.search import core
    from mahavishnu_assets.search.sql import Statement, vector_statement

    def short_ann(*args: object, exact: bool) -> Statement:
        st = vector_statement(*args, exact=exact)  # type: ignore[arg-type]
        return st if exact else Statement(st.sql, (st.args[0], 3, *st.args[2:]))

    space_id, vectors = await corpus(db, repos={"mid": 300})
    await build(db, space_id, "hnsw")
    monkeypatch.setattr(core, "vector_statement", short_ann)
    q = queries_near(vectors[500:], 1, seed=9)[0]
    only = SearchFilters(repo="mid")
    result = await search(db, mode="vector", vector=q, space_id=space_id, k=10, filters=only)
    exact = await search(db, mode="vector", vector=q, space_id=space_id, k=10, filters=only, exact=True)
    assert len(result.results) == 10 and result.exact_fallback and result.method == "hnsw"
    assert [h.chunk_id for h in result.results] == [h.chunk_id for h in exact.results]


async def test_path_prefix_is_literal_and_language_filters(db: Database) -> None:
    space_id, vectors = await corpus(db, count=300)
    async with db.connection() as conn:
        await add_chunks(conn, "lits", "src/a%b/x.py", [("percent", content_hash(1, b"synthetic"))])
        await add_chunks(conn, "lits", "src/aXb/y.py", [("plain", content_hash(2, b"synthetic"))])
        await add_chunks(
            conn, "lits", "src/a_b/z.go", [("underscore", content_hash(3, b"synthetic"))], language="go"
        )
        await add_chunks(conn, "lits", "src\\b/w.py", [("backslash", content_hash(4, b"synthetic"))])
    q = vectors[1]
    paths = lambda r: sorted(h.path for h in r.results)  # noqa: E731
    got = await search(
        db, mode="vector", vector=q, space_id=space_id, k=50, filters=SearchFilters(path_prefix="src/a%")
    )
    assert paths(got) == ["src/a%b/x.py"]
    got = await search(
        db, mode="vector", vector=q, space_id=space_id, k=50, filters=SearchFilters(path_prefix="src/a_")
    )
    assert paths(got) == ["src/a_b/z.go"]
    got = await search(
        db, mode="vector", vector=q, space_id=space_id, k=50, filters=SearchFilters(path_prefix="src\\")
    )
    assert paths(got) == ["src\\b/w.py"]
    got = await search(
        db,
        mode="vector",
        vector=q,
        space_id=space_id,
        k=50,
        filters=SearchFilters(repo="lits", language="go"),
    )
    assert paths(got) == ["src/a_b/z.go"]


async def test_bad_requests_are_clear_search_errors(db: Database) -> None:
    space_id, vectors = await corpus(db, count=100)
    with pytest.raises(SearchError, match="NUL"):
        await search(
            db, mode="vector", vector=vectors[0], space_id=space_id, filters=SearchFilters(repo="a\x00b")
        )
    with pytest.raises(SearchError, match="k must be"):
        await search(db, mode="vector", vector=vectors[0], space_id=space_id, k=0)
    with pytest.raises(SearchError, match="dimensions"):
        await search(db, mode="vector", vector=vectors[0][:10], space_id=space_id)
    with pytest.raises(SearchError, match="mode"):
        await search(db, mode="fuzzy", text="x")
    result = await search(
        db, mode="vector", vector=vectors[0], space_id=space_id, filters=SearchFilters(repo="nope")
    )
    assert result.results == [] and "no repository named 'nope'" in result.notices[0]


CODE = {
    "src/users/service.py": "def getUserName(user_id):\n    return lookup(user_id).display\n",
    "src/net/server.py": "class HTTPServer:\n    def serve_forever(self):\n        pass\n",
    "src/codec.js": "export function base64Encode(bytes) { return btoa(bytes) }\n",
    "src/frob/config.py": "def parseFrobnicatorConfig(path):\n    return load_yaml(path)\n",
    "docs/names.md": "Names of users are shown in the header; each comes from the profile.\n",
}


async def code_corpus(db: Database, filler: int = 200) -> tuple[int, HashingEmbedder]:
    """Files embedded with the offline local embedder, plus filler chunks of ordinary code words."""
    from mahavishnu_assets.index.synthetic import load_vectors
    from mahavishnu_assets.ingest.embed import ensure_space

    embedder = HashingEmbedder(128)
    rng = np.random.default_rng(3)
    words = (
        "config user name parse load value return self data server request handle error list get set".split()
    )
    texts = dict(CODE)
    for i in range(filler):
        texts[f"src/filler/f{i}.py"] = " ".join(rng.choice(words, 12)) + f"\nvalue_{i} = {i}\n"
    async with db.connection() as conn:
        space_id = await ensure_space(conn, embedder.key)
        hashes = [content_hash(i, b"code") for i in range(len(texts))]
        vectors = np.asarray(await embedder.embed(list(texts.values())), dtype=np.float32)
        await load_vectors(conn, space_id, vectors, hashes)
        for (path, text), digest in zip(texts.items(), hashes, strict=True):
            await add_chunks(conn, "code", path, [(text, digest)], language=path.rsplit(".", 1)[-1])
    return space_id, embedder


@pytest.mark.parametrize(
    ("query", "path"),
    [
        ("user name", "src/users/service.py"),
        ("get_user_name", "src/users/service.py"),
        ("getUserName", "src/users/service.py"),
        ("http server", "src/net/server.py"),
        ("base64 encode", "src/codec.js"),
        ("frobnicator", "src/frob/config.py"),
    ],
)
async def test_text_search_splits_identifiers(db: Database, query: str, path: str) -> None:
    await code_corpus(db, filler=20)
    result = await search(db, mode="text", text=query, k=3)
    assert result.results and result.results[0].path == path


async def test_hybrid_finds_a_file_by_a_rare_identifier(db: Database) -> None:
    space_id, embedder = await code_corpus(db)
    query = "parseFrobnicatorConfig"
    vector = (await embedder.embed([query]))[0]
    result = await search(db, mode="hybrid", text=query, vector=vector, space_id=space_id, k=5)
    top = result.results[0]
    assert top.path == "src/frob/config.py" and top.text_rank == 1
    # An identifier-shaped query with no stored symbols: the lexical and vector lists at their identifier weights.
    f = Settings().search
    expected = f.identifier_text_weight / (f.rrf_k + 1) + f.identifier_vector_weight / (
        f.rrf_k + top.vector_rank
    )
    assert top.score == pytest.approx(expected, abs=1e-6)
    scores = [h.score for h in result.results]
    assert scores == sorted(scores, reverse=True)
    # Text-only and vector-only halves of the same query, for the record.
    text_only = await search(db, mode="text", text=query, k=5)
    assert text_only.results[0].path == "src/frob/config.py"


async def test_text_statement_can_use_the_gin_index_and_handles_empty_queries(db: Database) -> None:
    await code_corpus(db, filler=20)
    st = text_statement("getUserName", 10, SearchFilters(), None)
    async with db.connection() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        plan = await conn.fetchval("EXPLAIN (FORMAT JSON) " + st.sql, *st.args)
    assert "chunks_search_terms_idx" in str(plan)
    for nothing in ("", "   ", "the and of", "!!! ??? ---", "'", "\x00"):
        result = await search(db, mode="text", text=nothing, k=5)
        assert result.results == []


async def test_an_index_whose_tuning_failed_still_serves_searches(db: Database) -> None:
    space_id, vectors = await corpus(db, count=1500)
    report = await build(db, space_id, "ivfflat")
    async with db.connection() as conn:
        await conn.execute("UPDATE mahavishnu.vector_indexes SET search_param = NULL, search_value = NULL")
    result = await search(db, mode="vector", vector=vectors[3], space_id=space_id, k=10)
    assert result.method == "ivfflat" and len(result.results) == 10
    assert result.search_params == {"ivfflat.probes": round(report["params"]["lists"] ** 0.5)}
