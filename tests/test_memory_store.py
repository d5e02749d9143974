"""MemoryStore memories: transactions, batch ids in input order, vector search with filters and thresholds."""

from __future__ import annotations

import numpy as np
import pytest

from mahavishnu_assets.database.pool import Database
from mahavishnu_assets.errors import MemoryStoreError
from mahavishnu_assets.ingest.embed import SpaceKey
from mahavishnu_assets.memory.store import MemoryStore
from mahavishnu_assets.settings import Settings

SPACE = SpaceKey("test", "unit", 4)


def store(db: Database, space: SpaceKey | None = SPACE) -> MemoryStore:
    return MemoryStore(db, Settings(), space=space)


async def test_store_memory_round_trip(db: Database) -> None:
    s = store(db)
    memory_id = await s.store_memory(
        "the pool survived a restart", "insight", metadata={"source": "ops", "ü": "ñ"}, embedding=[1, 0, 0, 0]
    )
    got = await s.get_memory(memory_id)
    assert got is not None
    assert got["content"] == "the pool survived a restart"
    assert got["memory_type"] == "insight"
    assert got["metadata"] == {"source": "ops", "ü": "ñ"}
    async with db.connection() as conn:
        row = await conn.fetchrow(
            "SELECT m.dimensions, s.provider, s.model FROM mahavishnu.memories m "
            "JOIN mahavishnu.embedding_spaces s ON s.id = m.space_id WHERE m.id = $1",
            memory_id,
        )
    assert (row["dimensions"], row["provider"], row["model"]) == (4, "test", "unit")
    # Without an embedding the memory is stored without a space.
    plain = await s.store_memory("no vector", "workflow")
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT space_id FROM mahavishnu.memories WHERE id = $1", plain) is None
    assert await s.delete_memories([plain]) == 1
    assert await s.get_memory(plain) is None


async def test_batch_returns_real_ids_in_input_order(db: Database) -> None:
    s = store(db)
    await s.store_memory("an earlier one", "agent")  # ids do not start at 1
    items = [
        {
            "content": f"memory {i}",
            "memory_type": ("agent", "rag", "workflow", "insight")[i % 4],
            "metadata": {"i": i},
            "embedding": [1, i + 1, 0, 0],
        }
        for i in range(50)
    ]
    ids = await s.batch_store_memories(items)
    assert len(ids) == 50 and len(set(ids)) == 50
    async with db.connection() as conn:
        rows = await conn.fetch(
            "SELECT id, content, metadata FROM mahavishnu.memories WHERE id = ANY($1)", ids
        )
    by_id = {r["id"]: r for r in rows}
    for i, memory_id in enumerate(ids):
        assert by_id[memory_id]["content"] == f"memory {i}"
        assert by_id[memory_id]["metadata"] == {"i": i}
    assert await s.batch_store_memories([]) == []


async def test_batch_is_one_transaction(db: Database) -> None:
    s = store(db)
    items = [{"content": "fine", "embedding": [1, 0, 0, 0]}, {"content": "bad dims", "embedding": [1, 0, 0]}]
    with pytest.raises(MemoryStoreError, match="3 dimensions"):
        await s.batch_store_memories(items)
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM mahavishnu.memories") == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"content": "x", "memory_type": "dream"}, "memory_type"),
        ({"content": ""}, "empty"),
        ({"content": "nul \x00 byte"}, "NUL"),
        ({"content": "lone \ud800 surrogate"}, "lone surrogate"),
        ({"content": "x", "metadata": {"bad": float("nan")}}, "JSON"),
        ({"content": "x", "embedding": [float("nan"), 1, 1, 1]}, "NaN"),
        ({"content": "x", "embedding": [0, 0, 0, 0]}, "zero vector"),
    ],
)
async def test_bad_input_is_refused_clearly(db: Database, kwargs: dict, message: str) -> None:
    s = store(db)
    content = kwargs.pop("content")
    with pytest.raises(MemoryStoreError, match=message):
        await s.store_memory(content, **kwargs)


async def test_vector_search_filters_threshold_and_order(db: Database) -> None:
    s = store(db)
    ids = await s.batch_store_memories(
        [
            {
                "content": "same direction",
                "memory_type": "agent",
                "embedding": [1, 0, 0, 0],
                "metadata": {"team": "a"},
            },
            {
                "content": "close",
                "memory_type": "rag",
                "embedding": [1, 0.2, 0, 0],
                "metadata": {"team": "b"},
            },
            {"content": "orthogonal", "memory_type": "agent", "embedding": [0, 1, 0, 0]},
            {"content": "opposite", "memory_type": "insight", "embedding": [-1, 0, 0, 0]},
            {"content": "tie of the first", "memory_type": "workflow", "embedding": [2, 0, 0, 0]},
        ]
    )
    results = await s.vector_search([1, 0, 0, 0], k=10)
    assert [r["content"] for r in results] == [
        "same direction",
        "tie of the first",
        "close",
        "orthogonal",
        "opposite",
    ]
    assert results[0]["similarity"] == pytest.approx(1.0)
    assert results[-1]["similarity"] == pytest.approx(-1.0)
    # Equal scores are ordered by id.
    assert results[0]["id"] == ids[0] and results[1]["id"] == ids[4]

    agents = await s.vector_search(np.array([1, 0, 0, 0]), memory_types=["agent"])
    assert [r["content"] for r in agents] == ["same direction", "orthogonal"]
    above = await s.vector_search([1, 0, 0, 0], threshold=0.5)
    assert {r["content"] for r in above} == {"same direction", "tie of the first", "close"}
    assert all(r["similarity"] >= 0.5 for r in above)
    team_b = await s.vector_search([1, 0, 0, 0], metadata={"team": "b"})
    assert [r["content"] for r in team_b] == ["close"]
    assert len(await s.vector_search([1, 0, 0, 0], k=2)) == 2
    with pytest.raises(MemoryStoreError):
        await s.vector_search([1, 0, 0], k=2)
    with pytest.raises(MemoryStoreError):
        await s.vector_search([1, 0, 0, 0], memory_types=["nope"])
    with pytest.raises(MemoryStoreError):
        await s.vector_search([1, 0, 0, 0], threshold=2)


async def test_spaces_never_mix(db: Database) -> None:
    a = store(db, SpaceKey("test", "model-a", 4))
    b = store(db, SpaceKey("test", "model-b", 4))
    await a.store_memory("from a", embedding=[1, 0, 0, 0])
    await b.store_memory("from b", embedding=[1, 0, 0, 0])
    assert [r["content"] for r in await a.vector_search([1, 0, 0, 0])] == ["from a"]
    assert [r["content"] for r in await b.vector_search([1, 0, 0, 0])] == ["from b"]


async def test_text_search_uses_the_embedder(db: Database) -> None:
    from mahavishnu_assets.ingest.local_embed import HashingEmbedder

    embedder = HashingEmbedder(dimensions=64)
    s = MemoryStore(db, Settings(), embedder=embedder)
    await s.batch_store_memories(
        [{"content": "restart the database pool"}, {"content": "bake a chocolate cake"}]
    )
    results = await s.vector_search("restart the database pool", k=1)
    assert results[0]["content"] == "restart the database pool"
    with pytest.raises(MemoryStoreError, match="no embedding space"):
        await store(db, None).vector_search([1.0, 0.0])
