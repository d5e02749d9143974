"""Model-aware text: document and query prefixes per model, applied on both paths and part of the space."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from mahavishnu_assets.database.migrations import load_migrations, migrate_down, migrate_up
from mahavishnu_assets.database.pool import Database, connect
from mahavishnu_assets.database.target import ConnectTarget
from mahavishnu_assets.errors import SearchError
from mahavishnu_assets.ingest.embed import (
    PROBE_TEXT,
    OllamaEmbedder,
    SpaceKey,
    ensure_space,
    make_embedder,
    ollama_options,
    stored_spaces,
)
from mahavishnu_assets.ingest.hashing import HashingVectorizer
from mahavishnu_assets.ingest.model_prefixes import model_prefixes
from mahavishnu_assets.ingest.pipeline import ingest_repository
from mahavishnu_assets.memory.store import MemoryStore
from mahavishnu_assets.search.service import search_text
from mahavishnu_assets.settings import Settings
from mahavishnu_assets.testing.ollama_stub import RecordingOllamaStub
from tests.ingest_helpers import DIMENSIONS, ingest_settings, make_repo

BGE_QUERY = "Represent this sentence for searching relevant passages: "


@pytest.fixture
def recorder() -> Iterator[RecordingOllamaStub]:
    with RecordingOllamaStub(dimensions=DIMENSIONS) as server:
        yield server


@pytest.mark.parametrize(
    ("model", "document", "query"),
    [
        ("nomic-embed-text", "search_document: ", "search_query: "),
        ("nomic-embed-text:v1.5", "search_document: ", "search_query: "),
        ("nomic-embed-text:latest", "search_document: ", "search_query: "),
        ("mxbai-embed-large", "", BGE_QUERY),
        ("mxbai-embed-large:335m", "", BGE_QUERY),
        ("snowflake-arctic-embed", "", BGE_QUERY),
        ("snowflake-arctic-embed:22m", "", BGE_QUERY),
        ("snowflake-arctic-embed:335m", "", BGE_QUERY),
        ("snowflake-arctic-embed:137m-m-long", "", BGE_QUERY),
        ("snowflake-arctic-embed:l", "", BGE_QUERY),
        ("snowflake-arctic-embed2", "", "query: "),
        ("snowflake-arctic-embed2:568m", "", "query: "),
        ("bge-large", "", BGE_QUERY),
        ("bge-m3", "", ""),
        ("hf.co/intfloat/multilingual-e5-small-gguf:Q8_0", "passage: ", "query: "),
        ("e5-large-v2", "passage: ", "query: "),
        ("all-minilm", "", ""),
        ("all-minilm:l6-v2", "", ""),
        ("granite-embedding:278m", "", ""),
        ("Some-Unknown-Model", "", ""),
    ],
)
def test_prefixes_come_from_the_model_cards(model: str, document: str, query: str) -> None:
    assert model_prefixes(model) == (document, query)
    key = OllamaEmbedder(ollama_options(Settings(embed_model=model))).key
    assert (key.document_prefix, key.query_prefix) == (document, query)


def test_settings_override_the_table(settings_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chosen = Settings(embed_model="nomic-embed-text", ollama={"document_prefix": "", "query_prefix": "q: "})
    key = OllamaEmbedder(ollama_options(chosen)).key
    assert (key.document_prefix, key.query_prefix) == ("", "q: ")
    monkeypatch.setenv("MAHAVISHNU_OLLAMA__DOCUMENT_PREFIX", "doc: ")
    key = OllamaEmbedder(ollama_options(Settings(embed_model="all-minilm"))).key
    assert (key.document_prefix, key.query_prefix) == ("doc: ", "")
    with pytest.raises(Exception, match="query_prefix"):
        Settings(ollama={"query_prefix": "bad\x00prefix"})


def test_spaces_are_told_apart_by_their_prefixes_but_described_as_before() -> None:
    card = SpaceKey("ollama", "nomic-embed-text", 768, "search_document: ", "search_query: ")
    assert card != SpaceKey("ollama", "nomic-embed-text", 768)
    assert card.describe() == "ollama:nomic-embed-text/768"
    assert card.sized(16) == SpaceKey("ollama", "nomic-embed-text", 16, "search_document: ", "search_query: ")


@pytest.mark.parametrize(
    ("model", "document", "query"),
    [("nomic-embed-text", "search_document: ", "search_query: "), ("mxbai-embed-large", "", BGE_QUERY)],
)
async def test_documents_and_queries_are_sent_with_their_prefixes(
    recorder: RecordingOllamaStub, model: str, document: str, query: str
) -> None:
    embedder = OllamaEmbedder(ollama_options(Settings(embed_model=model, ollama={"host": recorder.url})))
    try:
        await embedder.probe()
        documents = await embedder.embed(["def parse(path): ...", "   "])
        partial = await embedder.embed_partial(["class Config: ..."])
        queries = await embedder.embed_queries(["where is the config parsed"])
        one = await embedder.embed_query("open a connection")
    finally:
        await embedder.aclose()
    assert recorder.received == [
        PROBE_TEXT,
        document + "def parse(path): ...",
        document + "(empty)",
        document + "class Config: ...",
        query + "where is the config parsed",
        query + "open a connection",
    ]
    # What the stub returned for exactly those texts: the prefix is in the vector, not only on the wire.
    hashing = HashingVectorizer(DIMENSIONS)
    assert np.allclose(documents[0], hashing.vector(document + "def parse(path): ..."), atol=1e-6)
    assert np.allclose(partial[0], hashing.vector(document + "class Config: ..."), atol=1e-6)
    assert np.allclose(queries[0], hashing.vector(query + "where is the config parsed"), atol=1e-6)
    assert np.allclose(one, hashing.vector(query + "open a connection"), atol=1e-6)


async def test_other_prefixes_make_another_space_and_nothing_is_mixed(
    db: Database, database: ConnectTarget, tmp_path: Path, recorder: RecordingOllamaStub
) -> None:
    content = "def open_connection(host):\n    return connect(host)\n"
    repo = make_repo(tmp_path / "repo", {"db.py": content})
    card = ingest_settings(database, tmp_path / "home", recorder.url)
    plain = card.model_copy(
        update={"ollama": card.ollama.model_copy(update={"document_prefix": "", "query_prefix": ""})}
    )

    first = await ingest_repository(db, card, repo)
    assert first.embeddings_computed == 1
    first_texts = [t for t in recorder.received if t != PROBE_TEXT]
    recorder.received.clear()
    # The same files, the same model, other prefixes: every chunk is embedded again, into another space.
    second = await ingest_repository(db, plain, repo)
    assert second.embeddings_computed == 1 and second.embeddings_reused == 0
    second_texts = [t for t in recorder.received if t != PROBE_TEXT]
    assert len(first_texts) == 1 and first_texts[0].startswith("search_document: ")
    assert second_texts == [first_texts[0].removeprefix("search_document: ")]

    async with db.connection() as conn:
        spaces = await conn.fetch(
            """SELECT s.id, s.document_prefix, s.query_prefix, e.embedding
                 FROM mahavishnu.embedding_spaces s JOIN mahavishnu.embeddings e ON e.space_id = s.id
                ORDER BY s.id"""
        )
        card_key = OllamaEmbedder(ollama_options(card)).key.sized(DIMENSIONS)
        plain_key = OllamaEmbedder(ollama_options(plain)).key.sized(DIMENSIONS)
        assert [r["id"] for r in spaces] == [
            (await stored_spaces(conn, card_key))[0][0],
            (await stored_spaces(conn, plain_key))[0][0],
        ]
    assert [(r["document_prefix"], r["query_prefix"]) for r in spaces] == [
        ("search_document: ", "search_query: "),
        ("", ""),
    ]
    # Each space holds the vector of its own text: made with its prefix, never the other's.
    hashing = HashingVectorizer(DIMENSIONS)
    for row, sent in zip(spaces, first_texts + second_texts, strict=True):
        assert np.allclose(row["embedding"].to_numpy(), hashing.vector(sent), atol=1e-6)

    # A search embeds its query with its space's prefix and searches that space only.
    for settings, sent in ((card, "search_query: open a connection"), (plain, "open a connection")):
        found = await search_text(db, settings, "open a connection", mode="vector", k=5)
        assert recorder.received[-1] == sent
        assert [r["path"] for r in found["results"]] == ["db.py"]
    other = card.model_copy(update={"ollama": card.ollama.model_copy(update={"query_prefix": "find: "})})
    with pytest.raises(SearchError, match="Nothing is embedded"):
        await search_text(db, other, "open a connection", mode="vector")


async def test_spaces_differing_only_in_prefixes_are_distinct(db: Database) -> None:
    async with db.connection() as conn:
        a = await ensure_space(conn, SpaceKey("ollama", "m", 8, "d: ", "q: "))
        b = await ensure_space(conn, SpaceKey("ollama", "m", 8, "", "q: "))
        c = await ensure_space(conn, SpaceKey("ollama", "m", 8))
        assert len({a, b, c}) == 3
        assert await ensure_space(conn, SpaceKey("ollama", "m", 8, "d: ", "q: ")) == a
        assert await stored_spaces(conn, SpaceKey("ollama", "m", 0, "", "q: ")) == [(b, 8)]


async def test_memory_recall_embeds_its_query_as_a_query(
    db: Database, settings_dir: Path, recorder: RecordingOllamaStub
) -> None:
    settings = Settings(embed_model="nomic-embed-text", embedder="ollama", ollama={"host": recorder.url})
    embedder = make_embedder(settings)
    try:
        store = MemoryStore(db, settings, embedder=embedder)
        await store.store_memory("restart the database pool")
        await store.vector_search("pool restarts", k=1)
    finally:
        await embedder.aclose()
    assert recorder.received[-2:] == [
        "search_document: restart the database pool",
        "search_query: pool restarts",
    ]


async def test_reverting_the_migration_drops_only_spaces_with_prefixes(empty_database: ConnectTarget) -> None:
    before = max(m.version for m in load_migrations() if m.version < 40)
    await migrate_up(empty_database)
    conn = await connect(empty_database)
    try:
        await ensure_space(
            conn, SpaceKey("ollama", "nomic-embed-text", 8, "search_document: ", "search_query: ")
        )
        kept = await ensure_space(conn, SpaceKey("ollama", "all-minilm", 8))
    finally:
        await conn.close()
    await migrate_down(empty_database, to=before)
    conn = await connect(empty_database)
    try:
        rows = await conn.fetch("SELECT id, model FROM mahavishnu.embedding_spaces")
    finally:
        await conn.close()
    assert [(r["id"], r["model"]) for r in rows] == [(kept, "all-minilm")]
    await migrate_up(empty_database)
