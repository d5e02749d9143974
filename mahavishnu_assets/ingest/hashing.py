"""Deterministic bag-of-words vectors from token hashes: the offline embedder and the test server share them."""

from __future__ import annotations

import re
import zlib

import numpy as np

# Identifiers are split into their words too (camelCase, snake_case), so `parseConfig` meets `parse config`.
_TOKEN = re.compile(r"[A-Za-z][a-z]+|[A-Z]+(?![a-z])|[A-Za-z_][A-Za-z0-9_]*|\d+")


class HashingVectorizer:
    """Signed feature hashing of words into `dimensions` buckets, L2-normalized.

    Texts sharing words get close vectors, so searches with it return sensible neighbours, and the same text
    always gives the same vector on every machine (crc32, not Python's randomized `hash`).
    """

    def __init__(self, dimensions: int) -> None:
        self.dimensions = dimensions
        self._slots: dict[str, tuple[int, float]] = {}

    def _slot(self, token: str) -> tuple[int, float]:
        slot = self._slots.get(token)
        if slot is None:
            h = zlib.crc32(token.encode("utf-8", "surrogatepass"))
            slot = (h % self.dimensions, 1.0 if (h >> 31) & 1 else -1.0)
            if len(self._slots) < 1_000_000:
                self._slots[token] = slot
        return slot

    def vector(self, text: str) -> np.ndarray:
        out = np.zeros(self.dimensions, dtype=np.float32)
        for token in _TOKEN.findall(text):
            index, sign = self._slot(token.lower())
            out[index] += sign
        norm = float(np.linalg.norm(out))
        if norm == 0.0:
            # No words at all (blank or punctuation only): a fixed unit vector, never a zero one (cosine of a
            # zero vector is undefined).
            out[0] = 1.0
            return out
        return out / norm

    def vectors(self, texts: list[str]) -> list[list[float]]:
        return [self.vector(t).tolist() for t in texts]
