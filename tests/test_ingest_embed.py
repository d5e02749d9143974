"""Embedding through the official ollama client against a real HTTP server with faults switched on."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import numpy as np
import pytest

from mahavishnu_assets.database.pool import Database
from mahavishnu_assets.database.target import ConnectTarget
from mahavishnu_assets.errors import EmbeddingError, EmbeddingMismatchError
from mahavishnu_assets.ingest.embed import (
    EmbeddingRejectedError,
    OllamaEmbedder,
    OllamaOptions,
    SpaceKey,
    ensure_space,
    make_embedder,
)
from mahavishnu_assets.ingest.local_embed import HashingEmbedder, WordLlamaEmbedder
from mahavishnu_assets.ingest.pipeline import ingest_repository
from mahavishnu_assets.settings import Settings
from mahavishnu_assets.testing.ollama_stub import OllamaStub
from tests import ingest_helpers
from tests.ingest_helpers import DIMENSIONS, fingerprint, ingest_settings, make_repo, python_module

stub = ingest_helpers.stub  # the fixture


def embedder_for(stub: OllamaStub, **options: object) -> OllamaEmbedder:
    values: dict[str, object] = {
        "timeout_seconds": 1.0,
        "max_retries": 2,
        "retry_backoff_seconds": 0.01,
        "batch_size": 4,
        "concurrency": 2,
    }
    values.update(options)
    return OllamaEmbedder(OllamaOptions(host=stub.url, model="nomic-embed-text", **values))  # type: ignore[arg-type]


async def test_probe_batches_and_normalized_deterministic_vectors(stub: OllamaStub) -> None:
    embedder = embedder_for(stub)
    try:
        key = await embedder.probe()
        assert key == SpaceKey(
            "ollama", "nomic-embed-text", DIMENSIONS, "search_document: ", "search_query: "
        )
        texts = [f"text number {i}" for i in range(10)]
        vectors = await embedder.embed(texts)
        assert len(vectors) == 10 and all(len(v) == DIMENSIONS for v in vectors)
        assert all(abs(np.linalg.norm(v) - 1) < 1e-5 for v in vectors)
        assert vectors == await embedder.embed(texts)
        # 10 texts in batches of 4: three requests (plus the probe and the repeat).
        assert stub.stats.embed_requests == 1 + 3 + 3
    finally:
        await embedder.aclose()


async def test_lone_surrogates_are_sent_as_question_marks(stub: OllamaStub) -> None:
    """Undecodable bytes of a file or of a command-line argument reach Python as lone surrogates, which no JSON
    request can carry: they go as `?`, the rest of the text as it is."""
    embedder = embedder_for(stub)
    try:
        await embedder.probe()
        weird, plain = await embedder.embed_queries(["parse \udcff config", "parse ? config"])
        assert weird == plain
        assert len((await embedder.embed(["\udcff\udcfe"]))[0]) == DIMENSIONS
    finally:
        await embedder.aclose()


async def test_transient_5xx_is_retried(stub: OllamaStub) -> None:
    embedder = embedder_for(stub)
    try:
        await embedder.probe()
        stub.configure(fail_next=2)
        assert len(await embedder.embed(["a", "b"])) == 2
        assert embedder.stats.retries == 2
        stub.configure(fail_next=5)  # more failures than retries: a clear error
        with pytest.raises(EmbeddingError, match="failed 3 times"):
            await embedder.embed(["c"])
    finally:
        await embedder.aclose()


async def test_4xx_is_never_retried_and_a_bad_input_is_isolated(stub: OllamaStub) -> None:
    embedder = embedder_for(stub, batch_size=8)
    try:
        await embedder.probe()
        stub.reset()
        stub.configure(reject_containing="POISON")
        texts = [f"fine {i}" for i in range(7)] + ["POISON pill"]
        vectors = await embedder.embed_partial(texts)
        assert [v is None for v in vectors] == [False] * 7 + [True]
        assert embedder.stats.retries == 0
        # Halving 8 -> 4 -> 2 -> 1 finds the one input: 1 + 2 + 2 + 2 requests at most.
        assert stub.stats.embed_requests <= 7
        with pytest.raises(EmbeddingRejectedError) as caught:
            await embedder.embed(["POISON"])
        assert caught.value.indexes == [0]
        stub.configure(reject_containing=None, error_status=404)
        requests = stub.stats.embed_requests
        with pytest.raises(EmbeddingError, match="does not have model") as missing:
            await embedder.embed(["x"])
        assert "ollama pull nomic-embed-text" in missing.value.suggestion
        assert stub.stats.embed_requests == requests + 1  # no retry on 4xx
    finally:
        await embedder.aclose()


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ({"wrong_dimensions": DIMENSIONS + 3}, "dimensions"),
        ({"too_few": True}, "vectors for"),
        ({"ragged": True}, rf"vector of {DIMENSIONS - 1} dimensions \(input 2\)"),
        ({"non_finite": True}, "non-finite"),
        ({"non_numeric": True}, "non-numeric"),
    ],
)
async def test_mismatched_answers_stop_with_a_clear_error(
    stub: OllamaStub, fault: dict, message: str
) -> None:
    embedder = embedder_for(stub)
    try:
        await embedder.probe()
        stub.configure(**fault)
        with pytest.raises(EmbeddingMismatchError, match=message):
            await embedder.embed(["one", "two", "three"])
    finally:
        await embedder.aclose()


async def test_a_probe_answered_with_non_numbers_learns_no_space(stub: OllamaStub) -> None:
    embedder = embedder_for(stub)
    try:
        stub.configure(non_numeric=True)
        with pytest.raises(EmbeddingMismatchError, match="non-numeric"):
            await embedder.probe()
        assert embedder.key.dimensions == 0
    finally:
        stub.configure(non_numeric=False)
        await embedder.aclose()


@pytest.mark.parametrize("fault", ["not_json", "no_embeddings"])
async def test_an_answer_that_is_not_an_embedding_response_stops_without_retrying(
    stub: OllamaStub, fault: str
) -> None:
    embedder = embedder_for(stub, dimensions=DIMENSIONS)
    try:
        stub.configure(**{fault: True})
        before = stub.stats.embed_requests
        with pytest.raises(EmbeddingError, match="not an embedding response") as info:
            await embedder.embed(["one", "two"])
        assert "OLLAMA_HOST" in info.value.to_dict()["suggestion"]
        assert stub.stats.embed_requests == before + 1
    finally:
        stub.configure(**{fault: False})
        await embedder.aclose()


async def test_a_hanging_server_times_out(stub: OllamaStub) -> None:
    embedder = embedder_for(stub, timeout_seconds=0.2, max_retries=1, dimensions=DIMENSIONS)
    try:
        stub.configure(hang_seconds=3)
        with pytest.raises(EmbeddingError, match="Timeout"):
            await embedder.embed(["slow"])
        assert embedder.stats.retries == 1
    finally:
        stub.configure(hang_seconds=0)
        await embedder.aclose()


async def test_a_trickling_answer_times_out_as_a_whole(stub: OllamaStub) -> None:
    """A server that sends a byte now and then never trips a read timeout; the request's deadline still holds."""
    embedder = embedder_for(stub, timeout_seconds=0.5, max_retries=1, dimensions=DIMENSIONS)
    try:
        stub.configure(trickle_seconds=4)
        with pytest.raises(EmbeddingError, match="Timeout"):
            await embedder.embed(["slow", "drip"])
        assert embedder.stats.retries == 1
    finally:
        stub.configure(trickle_seconds=0)
        await embedder.aclose()


def test_make_embedder_honours_the_choice_and_announces_the_fallback(
    stub: OllamaStub, settings_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert isinstance(make_embedder(Settings(embedder="local")), WordLlamaEmbedder)
    hashing = make_embedder(Settings(embedder="hashing", ollama={"local_dimensions": 32}))
    assert isinstance(hashing, HashingEmbedder) and hashing.key == SpaceKey("local", "hashing-v1", 32)
    assert isinstance(
        make_embedder(Settings(embedder="ollama", ollama={"host": "http://127.0.0.1:9"})), OllamaEmbedder
    )
    reachable = make_embedder(Settings(embedder="auto", ollama={"host": stub.url}))
    assert isinstance(reachable, OllamaEmbedder) and reachable.announcement is None
    with caplog.at_level(logging.WARNING):
        fallback = make_embedder(Settings(embedder="auto", ollama={"host": "http://127.0.0.1:9"}))
    assert isinstance(fallback, WordLlamaEmbedder)
    assert fallback.announcement and "not reachable" in fallback.announcement
    assert "local:wordllama-l2-supercat-words/256" in fallback.announcement
    assert "offline local embedder" in caplog.text
    # Another web server behind the address is not Ollama either.
    stub.configure(not_json=True)
    try:
        other = make_embedder(Settings(embedder="auto", ollama={"host": stub.url}))
    finally:
        stub.configure(not_json=False)
    assert isinstance(other, WordLlamaEmbedder)
    assert other.announcement and "not an Ollama server" in other.announcement


async def test_hashing_embedder_is_deterministic_and_texts_sharing_words_are_near() -> None:
    embedder = HashingEmbedder(64)
    a, b, c = await embedder.embed(["parse the config file", "parseConfig(file)", "render the teapot"])
    assert a == (await embedder.embed(["parse the config file"]))[0]
    assert np.dot(a, b) > np.dot(a, c)
    assert embedder.key == SpaceKey("local", "hashing-v1", 64)


async def test_ensure_space_is_race_safe(db: Database) -> None:
    key = SpaceKey("ollama", "race-model", 8)

    async def one() -> int:
        async with db.connection() as conn:
            return await ensure_space(conn, key)

    ids = await asyncio.gather(*(one() for _ in range(5)))
    assert len(set(ids)) == 1
    with pytest.raises(EmbeddingError):
        async with db.connection() as conn:
            await ensure_space(conn, SpaceKey("ollama", "unprobed", 0))


# -- the pipeline with a faulty server: nothing half-written, a re-run completes --------------------------------
def files(count: int) -> dict[str, str | bytes]:
    return {f"pkg/mod_{i:02d}.py": python_module(f"mod{i}", 2) for i in range(count)}


async def test_mismatch_mid_ingest_writes_no_partial_batch_and_a_rerun_completes(
    db: Database, database: ConnectTarget, tmp_path: Path, stub: OllamaStub
) -> None:
    repo = make_repo(tmp_path / "repo", files(12))
    settings = ingest_settings(database, tmp_path / "home", stub.url, pipeline_depth=1)
    embedder = embedder_for(stub, dimensions=DIMENSIONS)
    await embedder.probe()
    stub.configure(wrong_dimensions=DIMENSIONS * 2)
    with pytest.raises(EmbeddingMismatchError):
        await ingest_repository(db, settings, repo, embedder=embedder)
    await embedder.aclose()
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM mahavishnu.chunks") == 0
        assert await conn.fetchval("SELECT count(*) FROM mahavishnu.embeddings") == 0
        status = await conn.fetchval("SELECT status FROM mahavishnu.ingest_runs ORDER BY id DESC LIMIT 1")
    assert status == "failed"

    stub.configure(wrong_dimensions=None)
    done = await ingest_repository(db, settings, repo)
    assert done.files_changed == 12
    async with db.connection() as conn:
        after = await fingerprint(conn)
        await conn.execute("TRUNCATE mahavishnu.repositories, mahavishnu.embeddings CASCADE")
    await ingest_repository(db, settings, repo)
    async with db.connection() as conn:
        assert await fingerprint(conn) == after


async def test_refused_chunk_skips_its_file_only(
    db: Database, database: ConnectTarget, tmp_path: Path, stub: OllamaStub
) -> None:
    content = files(4)
    content["pkg/poison.py"] = "POISON = 'the server refuses this'\n"
    repo = make_repo(tmp_path / "repo", content)
    settings = ingest_settings(database, tmp_path / "home", stub.url)
    stub.configure(reject_containing="POISON")
    result = await ingest_repository(db, settings, repo)
    assert result.skipped == {"embedding_rejected": 1}
    assert result.files_changed == 4
    again = await ingest_repository(db, settings, repo)
    assert again.skipped == {"embedding_rejected": 1} and again.files_read == 0
    # The server is fixed: the file is tried again on the next run and ingested.
    stub.configure(reject_containing=None)
    async with db.connection() as conn:
        await conn.execute("UPDATE mahavishnu.skipped_files SET mtime_ns = NULL")
    fixed = await ingest_repository(db, settings, repo)
    assert fixed.skipped == {} and fixed.files_added == 1


async def test_transient_failures_during_ingest_are_absorbed(
    db: Database, database: ConnectTarget, tmp_path: Path, stub: OllamaStub
) -> None:
    repo = make_repo(tmp_path / "repo", files(6))
    settings = ingest_settings(database, tmp_path / "home", stub.url)
    stub.configure(fail_next=2)
    result = await ingest_repository(db, settings, repo)
    assert result.files_changed == 6 and stub.stats.failures == 2
