"""A real small embedding model for tests and benchmarks: WordLlama, loaded from the files its wheel ships.

Its vectors have real semantics (unlike word hashing), so recall measured on them says how an index behaves
with a language model's embeddings. It lives in its own space (provider `testing`), never mixed with the
product's `local` or Ollama spaces.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np

from mahavishnu_assets.ingest.embed import EmbedStats, SpaceKey

PROVIDER = "testing"
MODEL = "wordllama-l2-supercat"


class WordLlamaEmbedder:
    """The Embedder protocol over WordLlama (256 dimensions by default; it allows 64, 128, 256, 512, 1024)."""

    def __init__(self, dimensions: int = 256) -> None:
        import wordllama
        from wordllama import WordLlama

        # The default loader fetches the tokenizer from the network; the wheel holds everything needed.
        self._model = WordLlama.load(
            cache_dir=Path(wordllama.__file__).parent, disable_download=True, dim=dimensions
        )
        self.key = SpaceKey(PROVIDER, MODEL, dimensions)
        self.announcement: str | None = None
        self.stats = EmbedStats()

    async def probe(self) -> SpaceKey:
        return self.key

    def _vectors(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self._model.embed(texts, norm=True), dtype=np.float32)

    async def embed_partial(self, texts: list[str]) -> list[Any]:
        if not texts:
            return []
        matrix = await asyncio.to_thread(self._vectors, [t if t.strip() else "(empty)" for t in texts])
        self.stats.requests += 1
        self.stats.texts += len(texts)
        return list(matrix)

    async def embed(self, texts: list[str]) -> list[list[float]]:
        return [v.tolist() for v in await self.embed_partial(texts)]

    async def aclose(self) -> None:
        return None
