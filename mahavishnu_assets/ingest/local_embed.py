"""Offline embedders: WordLlama (the `local` embedder) and word hashing (for tests only)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import numpy as np

from mahavishnu_assets.errors import EmbeddingError
from mahavishnu_assets.ingest.embed import LOCAL_PROVIDER, EmbedStats, SpaceKey, encodable
from mahavishnu_assets.ingest.word_form import word_form

# WordLlama's l2_supercat token embeddings at 256 dimensions: weights and tokenizer ship inside its wheel.
WORDLLAMA_CONFIG = "l2_supercat"
# The model reads each text's words (ingest.word_form); the name says so, as vectors of the raw text, stored
# before, are another space.
WORDLLAMA_MODEL = "wordllama-l2-supercat-words"
WORDLLAMA_DIMENSIONS = 256
HASHING_MODEL = "hashing-v1"
# Texts per call into the model off the event loop: large enough to amortize the hand-off, small enough that
# the writer's tasks get the loop back often.
_SLICE = 256
# Characters of a text the model reads: its batches are padded to their longest text, so one huge text would
# cost memory for all of them; an average over the first 8,000 characters says what the text is about.
MAX_CHARS = 8000

_load_lock = threading.Lock()
_loaded: Any = None
# The model is shared by every embedder of the process; one embedding call at a time keeps its tokenizer's
# own threads from competing with each other.
_embed_lock = threading.Lock()


def wordllama_model() -> Any:
    """The WordLlama model, loaded once per process (about 0.3 s with its imports) from its wheel: never
    downloaded."""
    global _loaded
    with _load_lock:
        if _loaded is None:
            try:
                import wordllama
                from wordllama import WordLlama

                # The package's own folder as the cache: the default one would fetch the tokenizer from the
                # network, while the wheel already holds it.
                model = WordLlama.load(
                    config=WORDLLAMA_CONFIG,
                    dim=WORDLLAMA_DIMENSIONS,
                    cache_dir=Path(wordllama.__file__).parent,
                    disable_download=True,
                )
            except (ImportError, OSError, ValueError) as exc:
                raise EmbeddingError(
                    f"The offline embedder (WordLlama {WORDLLAMA_CONFIG}) could not be loaded: {exc}",
                    suggestion="Reinstall it (`pip install --force-reinstall wordllama`), or use Ollama "
                    "(MAHAVISHNU_EMBEDDER=ollama).",
                ) from exc
            _loaded = model
        return _loaded


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1; a row with no direction (a text without tokens) becomes a fixed unit vector,
    never a zero or NaN one (cosine distance to it would be undefined)."""
    matrix = np.nan_to_num(matrix.astype(np.float32, copy=False), nan=0.0, posinf=0.0, neginf=0.0)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    empty = norms[:, 0] == 0
    matrix[empty] = 0.0
    matrix[empty, 0] = 1.0
    norms[empty] = 1.0
    return matrix / norms


def wordllama_vectors(texts: list[str], dimensions: int = WORDLLAMA_DIMENSIONS) -> np.ndarray:
    """Unit vectors of the texts, the first `dimensions` of the model's (its dimensions are ordered by
    importance, so a prefix is the smaller model)."""
    model = wordllama_model()
    # A text without tokens averages nothing (0/0): `unit_rows` gives it a fixed vector instead.
    with _embed_lock, np.errstate(invalid="ignore", divide="ignore"):
        raw = model.embed([encodable(t[:MAX_CHARS]) for t in texts], norm=False, return_np=True)
    matrix = unit_rows(np.asarray(raw)[:, :dimensions])
    if matrix.shape != (len(texts), dimensions):
        raise EmbeddingError(
            f"WordLlama returned vectors of shape {matrix.shape} for {len(texts)} texts, expected "
            f"{dimensions} dimensions each",
        )
    return matrix


def _word_vectors(texts: list[str]) -> np.ndarray:
    # The model reads at most MAX_CHARS of each word form, which is shorter than its text: twice that much of
    # the text is enough, and a huge text costs no more than that.
    return wordllama_vectors([word_form(t[: 2 * MAX_CHARS]) for t in texts])


class _InProcess:
    """What both in-process embedders share: no query prefix, nothing to close; `embed_partial` is theirs."""

    async def embed_partial(self, texts: list[str]) -> list[Any]:
        raise NotImplementedError

    async def embed(self, texts: list[str]) -> list[list[float]]:
        return [v.tolist() for v in await self.embed_partial(texts)]

    async def embed_queries(self, texts: list[str]) -> list[list[float]]:
        return await self.embed(texts)

    async def embed_query(self, text: str) -> list[float]:
        return (await self.embed([text]))[0]

    async def aclose(self) -> None:
        return None


class WordLlamaEmbedder(_InProcess):
    """WordLlama (MIT): averaged token embeddings distilled from a large language model. No server, no
    download, real semantics, about 1,300 chunks of 40 lines per CPU-second; its own space, no prefixes.
    Documents and queries alike reach it in their word form (`ingest.word_form`)."""

    def __init__(self, *, announcement: str | None = None) -> None:
        self.key = SpaceKey(LOCAL_PROVIDER, WORDLLAMA_MODEL, WORDLLAMA_DIMENSIONS)
        self.announcement = announcement
        self.stats = EmbedStats()

    async def probe(self) -> SpaceKey:
        return self.key

    async def embed_partial(self, texts: list[str]) -> list[Any]:
        started = asyncio.get_running_loop().time()
        out: list[Any] = []
        for start in range(0, len(texts), _SLICE):
            # CPU work in a thread: the event loop keeps serving database tasks meanwhile.
            out.extend(await asyncio.to_thread(_word_vectors, texts[start : start + _SLICE]))
        self.stats.requests += 1
        self.stats.texts += len(texts)
        self.stats.seconds += asyncio.get_running_loop().time() - started
        return out


class HashingEmbedder(_InProcess):
    """Word-hash vectors (texts sharing words are neighbours, nothing more): deterministic and instant, for
    tests only (MAHAVISHNU_EMBEDDER=hashing). Its own space, provider `local`, model `hashing-v1`."""

    def __init__(self, dimensions: int = 384, *, announcement: str | None = None) -> None:
        from mahavishnu_assets.ingest.hashing import HashingVectorizer

        self.key = SpaceKey(LOCAL_PROVIDER, HASHING_MODEL, dimensions)
        self.announcement = announcement
        self.stats = EmbedStats()
        self._vectorizer = HashingVectorizer(dimensions)

    async def probe(self) -> SpaceKey:
        return self.key

    async def embed_partial(self, texts: list[str]) -> list[Any]:
        out: list[Any] = []
        for start in range(0, len(texts), 256):
            out.extend(self._vectorizer.vector(t) for t in texts[start : start + 256])
            # Hashing is CPU work: let database tasks of the same loop run between slices.
            await asyncio.sleep(0)
        self.stats.requests += 1
        self.stats.texts += len(texts)
        return out
