"""What every part of the memory store shares: the pool, settings, the embedding space, input checks."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mahavishnu_assets.errors import MemoryStoreError

if TYPE_CHECKING:
    import asyncpg

    from mahavishnu_assets.database.pool import Database
    from mahavishnu_assets.ingest.embed import Embedder, SpaceKey
    from mahavishnu_assets.settings import Settings

SCHEMA = "mahavishnu"
MAX_KEY_CHARS = 1000


class StoreBase:
    """The pool and settings, and the embedding space memories are stored in."""

    def __init__(
        self,
        db: Database,
        settings: Settings | None = None,
        *,
        embedder: Embedder | None = None,
        space: SpaceKey | None = None,
    ) -> None:
        from mahavishnu_assets.settings import load_settings

        self.db = db
        self.settings = settings or load_settings()
        self.embedder = embedder
        self.space = space
        self._space_ids: dict[SpaceKey, int] = {}

    def _space_key(self) -> SpaceKey | None:
        if self.space is not None:
            return self.space
        if self.embedder is not None and self.embedder.key.dimensions > 0:
            return self.embedder.key
        return None

    async def _space_id(self, conn: asyncpg.Connection, key: SpaceKey) -> int:
        if key not in self._space_ids:
            from mahavishnu_assets.ingest.embed import ensure_space

            self._space_ids[key] = await ensure_space(conn, key)
        return self._space_ids[key]

    async def _embed(self, texts: list[str], *, queries: bool = False) -> list[list[float]]:
        if self.embedder is None:
            raise MemoryStoreError(
                "No embedder: give embeddings explicitly or create the store with an embedder",
                suggestion="MemoryStore(db, settings, embedder=make_embedder(settings)), or pass embedding=...",
            )
        if self.embedder.key.dimensions < 1:
            await self.embedder.probe()
        return await (self.embedder.embed_queries if queries else self.embedder.embed)(texts)


def check_text(value: Any, what: str, *, max_chars: int | None = None, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise MemoryStoreError(f"{what} must be a string, not {type(value).__name__}")
    if not value and not allow_empty:
        raise MemoryStoreError(f"{what} must not be empty")
    if "\x00" in value:
        # PostgreSQL text cannot hold NUL; silently dropping it would change what was stored.
        raise MemoryStoreError(f"{what} contains a NUL character", suggestion="Remove NUL bytes first.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (from undecodable bytes, say) cannot be stored as text nor sent to the embedder.
        raise MemoryStoreError(
            f"{what} is not valid Unicode text (it holds a lone surrogate)",
            suggestion="Decode the source bytes with a real encoding, or replace what cannot be decoded.",
        ) from None
    if max_chars is not None and len(value) > max_chars:
        raise MemoryStoreError(f"{what} is longer than {max_chars} characters")
    return value


def check_json(value: Any, what: str) -> Any:
    """Refuse what JSON cannot hold exactly (NaN, sets, objects) instead of storing a lossy string."""
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise MemoryStoreError(f"{what} is not JSON-serialisable: {exc}") from None
    if "\\u0000" in text:
        raise MemoryStoreError(f"{what} contains a NUL character", suggestion="jsonb cannot store \\u0000.")
    return value


def check_metadata(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MemoryStoreError(f"metadata must be a dict, not {type(value).__name__}")
    return check_json(value, "metadata")


def check_vector(value: Any, dimensions: int | None, what: str = "embedding") -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        raise MemoryStoreError(f"{what} must be a list of numbers") from None
    if array.ndim != 1 or array.size == 0:
        raise MemoryStoreError(f"{what} must be a non-empty 1-D list of numbers")
    if dimensions is not None and array.size != dimensions:
        raise MemoryStoreError(
            f"{what} has {array.size} dimensions but the embedding space has {dimensions}",
            suggestion="Vectors of different models or sizes are never mixed; use the store's embedder.",
        )
    if not np.all(np.isfinite(array)):
        raise MemoryStoreError(f"{what} contains NaN or infinite values")
    if not math.isfinite(float(np.linalg.norm(array))) or float(np.linalg.norm(array)) == 0.0:
        raise MemoryStoreError(f"{what} is the zero vector: cosine similarity is undefined for it")
    return array


def check_tags(tags: Sequence[str] | None) -> list[str]:
    if tags is None:
        return []
    if isinstance(tags, str):
        raise MemoryStoreError("tags must be a list of strings, not one string")
    out: list[str] = []
    for tag in tags:
        check_text(tag, "tag", max_chars=MAX_KEY_CHARS)
        if tag not in out:
            out.append(tag)
    return out


def check_seconds(value: float | int | None, what: str) -> float | None:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise MemoryStoreError(f"{what} must be a positive number of seconds, got {value!r}")
    return float(value)
