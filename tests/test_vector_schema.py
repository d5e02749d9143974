"""The `vector` extension outside `public` (as hosted servers keep it): ingest writes vectors, search reads them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from pgvector import Vector

from mahavishnu_assets.database.migrations import migrate_up
from mahavishnu_assets.database.pool import Database, PoolConfig, connect
from mahavishnu_assets.database.target import ConnectTarget
from mahavishnu_assets.database.vectors import register_vector_codec, vector_schema
from mahavishnu_assets.ingest.pipeline import ingest_repository
from mahavishnu_assets.ingest.store import accept_wire_vectors, vector_wire
from mahavishnu_assets.search.core import search
from mahavishnu_assets.search.service import search_text
from mahavishnu_assets.testing.ollama_stub import OllamaStub
from tests import ingest_helpers
from tests.ingest_helpers import DIMENSIONS, ingest_settings, make_repo, python_module

stub = ingest_helpers.stub  # the fixture


@pytest.fixture
async def extensions_db(empty_database: ConnectTarget) -> AsyncIterator[Database]:
    """A migrated database whose `vector` extension lives in `extensions`, found through the search path."""
    conn = await connect(empty_database)
    try:
        await conn.execute("CREATE SCHEMA extensions; CREATE EXTENSION vector SCHEMA extensions")
        await conn.execute(
            f'ALTER DATABASE "{empty_database.database}" SET search_path = "$user", public, extensions'
        )
    finally:
        await conn.close()
    await migrate_up(empty_database)
    db = await Database(empty_database, PoolConfig(min_size=1, max_size=4)).open()
    yield db
    await db.close()


async def test_ingest_writes_and_search_reads_vectors_in_another_schema(
    extensions_db: Database, empty_database: ConnectTarget, tmp_path: Path, stub: OllamaStub
) -> None:
    db = extensions_db
    repo = make_repo(
        tmp_path / "repo", {"src/alpha.py": python_module("alpha"), "src/beta.py": python_module("beta")}
    )
    settings = ingest_settings(empty_database, tmp_path / "home", stub.url)
    result = await ingest_repository(db, settings, repo, name="demo")
    assert result.chunks_written > 0 and result.embeddings_computed > 0

    async with db.connection() as conn:
        assert await vector_schema(conn) == "extensions"
        assert await conn.fetchval("SELECT to_regtype('public.vector')") is None
        stored = await conn.fetchrow(
            """SELECT e.space_id, e.embedding, c.id AS chunk_id FROM mahavishnu.embeddings e
               JOIN mahavishnu.chunks c ON c.content_hash = e.content_hash ORDER BY c.id LIMIT 1"""
        )
    assert stored is not None
    vector = stored["embedding"]
    # Decoded by our codec (text would come back as a str), the stub's unit-length vector.
    assert isinstance(vector, Vector)
    assert len(vector.to_list()) == DIMENSIONS
    assert np.linalg.norm(vector.to_numpy()) == pytest.approx(1.0, abs=1e-5)

    # The stored vector as the query: encoded on the way in, and the exact search finds its own chunk first.
    found = await search(
        db, mode="vector", vector=vector.to_numpy(), space_id=stored["space_id"], k=1, exact=True
    )
    assert [h.chunk_id for h in found.results] == [stored["chunk_id"]]
    assert found.results[0].score == pytest.approx(1.0, abs=1e-5)

    by_text = await search_text(db, settings, "alpha_function_1 value", mode="vector", k=3)
    assert by_text["results"] and by_text["space"] == f"ollama:nomic-embed-text/{DIMENSIONS}"


async def test_a_writer_connection_takes_wire_vectors_in_another_schema(extensions_db: Database) -> None:
    """The writers' registration (ingest.store) is the pool's: bytes already in pgvector's format go through."""
    matrix = np.array([[1.0, 2.0, 3.0], [0.5, 0.0, -1.0]], dtype=">f4")
    conn = await connect(extensions_db.target)
    try:
        await accept_wire_vectors(conn)
        # As the writers load chunks' vectors: binary COPY of rows already in wire format.
        await conn.execute("CREATE TEMP TABLE wire (n int, v vector(3))")
        await conn.copy_records_to_table(
            "wire", records=list(enumerate(vector_wire(matrix))), columns=["n", "v"]
        )
        back = await conn.fetch("SELECT v FROM wire ORDER BY n")
        assert [row["v"].to_list() for row in back] == matrix.astype(np.float32).tolist()
        assert await register_vector_codec(conn, "public") == "extensions"  # a wrong guess is looked up again
        assert (await conn.fetchval("SELECT $1::vector", [1, 2])).to_list() == [1.0, 2.0]
    finally:
        await conn.close()
