"""The offline `local` embedder: WordLlama from its wheel, real semantics, loaded once, off the event loop."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from mahavishnu_assets.database.pool import Database
from mahavishnu_assets.database.target import ConnectTarget
from mahavishnu_assets.ingest.embed import Embedder, SpaceKey
from mahavishnu_assets.ingest.local_embed import (
    WordLlamaEmbedder,
    unit_rows,
    wordllama_model,
    wordllama_vectors,
)
from mahavishnu_assets.ingest.pipeline import ingest_repository
from mahavishnu_assets.ingest.word_form import word_form
from mahavishnu_assets.search.service import search_text
from mahavishnu_assets.settings import Settings
from tests.ingest_helpers import make_repo


def cosine(a: list[float], b: list[float]) -> float:
    return float(np.dot(a, b))


async def test_vectors_are_unit_length_deterministic_and_in_their_own_space() -> None:
    embedder = WordLlamaEmbedder()
    assert isinstance(embedder, Embedder)
    assert await embedder.probe() == SpaceKey("local", "wordllama-l2-supercat-words", 256)
    texts = [
        "def parse_config(path):\n    return yaml.safe_load(open(path))",
        "",
        "   ",
        "\x00",
        "ünïcode ✓",
        "\udcff\udcfe",  # lone surrogates: undecodable bytes of a file or a command-line argument
        "parse \udcff config",
    ]
    vectors = await embedder.embed(texts)
    assert len(vectors) == len(texts) and all(len(v) == 256 for v in vectors)
    assert all(np.isfinite(v).all() and abs(np.linalg.norm(v) - 1) < 1e-5 for v in vectors)
    assert vectors == await embedder.embed(texts)
    # No prefixes: queries and documents are the same text to this model.
    assert await embedder.embed_queries(texts[:1]) == vectors[:1]
    assert await embedder.embed_query(texts[0]) == vectors[0]
    partial = await embedder.embed_partial(texts[:2])
    assert [p.dtype for p in partial] == [np.float32] * 2 and np.allclose(partial[0], vectors[0])


def test_the_word_form_keeps_the_words_that_say_what_code_does() -> None:
    code = "def render_table(self, rows: list) -> None:\n    return self._drawHTMLRows(rows)  # the rows"
    assert word_form(code) == "render table rows list draw html rows rows rows"
    assert word_form("Return the width of the Console.") == "width console"
    assert word_form("größe_berechnen(Übersicht)") == "größe berechnen übersicht"
    assert word_form("utf8ToBytes 2x") == "utf 8 bytes 2 x"
    assert word_form("HTTPServer für Größe") == "http server für größe"
    # Nothing but punctuation, keywords or stop words: the text as it is, never an empty one.
    for text in ("{}", "+= -> ::", "return self", "", "\x00"):
        assert word_form(text) == text


async def test_documents_and_queries_reach_the_model_in_their_word_form() -> None:
    embedder = WordLlamaEmbedder()
    code = "def parse_config(path):\n    return yaml.safe_load(open(path))"
    expected = wordllama_vectors([word_form(code)])[0]
    assert np.allclose(await embedder.embed_query(code), expected)
    assert np.allclose((await embedder.embed([code]))[0], expected)
    assert not np.allclose(wordllama_vectors([code])[0], expected)


async def test_related_texts_are_closer_than_unrelated_ones() -> None:
    """Semantics, not shared words: the related pairs have no word in common."""
    embedder = WordLlamaEmbedder()
    query, related, unrelated = await embedder.embed(
        ["open a database connection", "connect to the postgres server", "bake a chocolate cake"]
    )
    assert cosine(query, related) > cosine(query, unrelated) + 0.2
    code, described, other = await embedder.embed_queries(
        [
            "def read_settings(path): return yaml.safe_load(open(path))",
            "load the configuration file",
            "draw a red circle on the canvas",
        ]
    )
    assert cosine(code, described) > cosine(code, other)


def test_the_model_is_loaded_once_and_safely_from_many_threads() -> None:
    seen: list[object] = []
    threads = [threading.Thread(target=lambda: seen.append(wordllama_model())) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 4 and all(m is seen[0] for m in seen)
    assert wordllama_model() is seen[0]


def test_it_loads_from_the_wheel_without_network_or_cache(tmp_path: Path) -> None:
    """A fresh process with an empty home and every proxy pointing nowhere: any download would fail."""
    nowhere = "http://127.0.0.1:9"
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "HF_HOME": str(tmp_path / "hf"),
        "HTTP_PROXY": nowhere,
        "HTTPS_PROXY": nowhere,
        "ALL_PROXY": nowhere,
        "NO_PROXY": "",
    }
    code = (
        "import asyncio\n"
        "from mahavishnu_assets.ingest.local_embed import WordLlamaEmbedder\n"
        "v = asyncio.run(WordLlamaEmbedder().embed(['hello world']))\n"
        "print(len(v[0]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == "256"
    assert not any(tmp_path.rglob("*.safetensors")) and not any(tmp_path.rglob("*tokenizer*"))


async def test_the_event_loop_runs_while_it_computes() -> None:
    embedder = WordLlamaEmbedder()
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    started = ticks
    await embedder.embed([f"function number {i} returns the value {i * i}" for i in range(2000)])
    during = ticks - started
    done.set()
    await task
    # Computing inline would hold the loop for the whole call; from a thread, the ticker keeps running.
    assert during > 8


def test_rows_without_direction_get_a_fixed_unit_vector() -> None:
    rows = unit_rows(np.array([[0.0, 0.0, 0.0], [3.0, 4.0, 0.0], [np.nan, np.nan, np.nan]], dtype=np.float32))
    assert np.allclose(rows, [[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [1.0, 0.0, 0.0]])


async def test_an_offline_ingest_finds_code_by_meaning(
    db: Database, database: ConnectTarget, tmp_path: Path, settings_dir: Path
) -> None:
    repo = make_repo(
        tmp_path / "repo",
        {
            "storage.py": "def open_session(dsn):\n    '''Connect to the postgres server.'''\n    return psycopg.connect(dsn)\n",
            "drawing.py": "def paint(canvas):\n    '''Draw a red circle.'''\n    canvas.circle(0, 0, 5, fill='red')\n",
            "baking.py": "def bake(oven):\n    '''Bake a chocolate cake.'''\n    oven.heat(180)\n",
        },
    )
    settings = Settings(home=tmp_path / "home", database_url=database.libpq_url(), embedder="local")
    result = await ingest_repository(db, settings, repo)
    assert result.embedding_space == "local:wordllama-l2-supercat-words/256"
    found = await search_text(db, settings, "database connection", mode="vector", k=3)
    assert [r["path"] for r in found["results"]][0] == "storage.py"
    assert found["space"] == "local:wordllama-l2-supercat-words/256"


@pytest.mark.parametrize("choice", ["local", "hashing"])
def test_the_embedder_choice_is_validated(choice: str, settings_dir: Path) -> None:
    assert Settings(embedder=choice).embedder == choice
    with pytest.raises(Exception, match="embedder"):
        Settings(embedder="wordhash")
