"""QueryEmbedder against the Ollama protocol stub: concurrent queries share requests, each keeps its own answer
and its own failure, and every call ends at the deadline."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import pytest

from mahavishnu_assets.errors import EmbeddingError
from mahavishnu_assets.ingest.embed import OllamaEmbedder, OllamaOptions
from mahavishnu_assets.search.query_embedder import QueryEmbedder
from mahavishnu_assets.testing.ollama_stub import OllamaStub
from tests import ingest_helpers

stub = ingest_helpers.stub  # the fixture


@pytest.fixture
async def queries(stub: OllamaStub) -> AsyncIterator[QueryEmbedder]:
    options = OllamaOptions(host=stub.url, model="nomic-embed-text", timeout_seconds=5, max_retries=0)
    embedder = QueryEmbedder(OllamaEmbedder(options), 1.0, batch_size=16, in_flight=1)
    await embedder.probe()
    yield embedder
    await embedder.aclose()


async def test_concurrent_queries_share_requests_and_get_their_own_vectors(
    queries: QueryEmbedder, stub: OllamaStub
) -> None:
    texts = [f"query number {i} about parsing" for i in range(40)]
    alone = await queries.inner.embed_queries(texts)
    stub.reset()
    together = await asyncio.gather(*(queries.embed_queries([t]) for t in texts))
    # One request at a time, at most 16 texts each: the 40 queries took at most 4 requests, not 40.
    assert stub.stats.embed_requests <= 4 and stub.stats.texts == 40
    # Each caller gets the vector of its own text, in its own place.
    for got, expected in zip(together, alone, strict=True):
        assert np.allclose(got[0], expected, atol=1e-6)


async def test_a_refused_query_fails_alone(queries: QueryEmbedder, stub: OllamaStub) -> None:
    stub.configure(reject_containing="POISON")
    results = await asyncio.gather(
        queries.embed_queries(["fine one"]),
        queries.embed_queries(["POISON pill"]),
        queries.embed_queries(["fine two"]),
        return_exceptions=True,
    )
    assert isinstance(results[1], EmbeddingError) and "refused" in results[1].message
    assert all(
        isinstance(r, list) and len(r[0]) == ingest_helpers.DIMENSIONS for r in (results[0], results[2])
    )


async def test_a_hung_server_is_an_error_at_the_deadline_and_frees_the_slot(
    queries: QueryEmbedder, stub: OllamaStub
) -> None:
    stub.configure(hang_seconds=60)
    outcomes = await asyncio.gather(
        *(queries.embed_queries([f"q{i}"]) for i in range(3)), return_exceptions=True
    )
    assert all(isinstance(o, EmbeddingError) and "no answer within 1s" in o.message for o in outcomes)
    stub.configure(hang_seconds=0)
    # The hung request gave its slot back at the deadline: the next query is answered.
    assert len((await queries.embed_queries(["after the hang"]))[0]) == ingest_helpers.DIMENSIONS
