"""Memories (agent, rag, workflow, insight) with embeddings, stored and searched by cosine similarity."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg
import numpy as np
from pgvector import Vector

from mahavishnu_assets.errors import MemoryStoreError
from mahavishnu_assets.memory.base import StoreBase, check_metadata, check_text, check_vector

MEMORY_TYPES = ("agent", "rag", "workflow", "insight")
MAX_CONTENT_CHARS = 1_000_000


def check_memory_type(value: Any) -> str:
    if value not in MEMORY_TYPES:
        raise MemoryStoreError(
            f"memory_type must be one of {', '.join(MEMORY_TYPES)}, got {value!r}",
            suggestion="Use agent, rag, workflow or insight.",
        )
    return str(value)


def _memory_dict(row: asyncpg.Record, *, with_similarity: bool = False) -> dict[str, Any]:
    out = {
        "id": row["id"],
        "memory_type": row["memory_type"],
        "content": row["content"],
        "metadata": row["metadata"],
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
    }
    if with_similarity:
        out["similarity"] = round(float(row["similarity"]), 6)
    return out


class MemoriesMixin(StoreBase):
    """Store, fetch, delete and search memories."""

    async def _prepare(
        self, items: Sequence[Mapping[str, Any]]
    ) -> list[tuple[str, str, dict[str, Any], Any]]:
        prepared: list[tuple[str, str, dict[str, Any], Any]] = []
        for i, item in enumerate(items):
            if not isinstance(item, Mapping):
                raise MemoryStoreError(
                    f"item {i} must be a dict with content, memory_type, metadata, embedding"
                )
            content = check_text(item.get("content"), f"item {i} content", max_chars=MAX_CONTENT_CHARS)
            memory_type = check_memory_type(item.get("memory_type", "agent"))
            metadata = check_metadata(item.get("metadata"))
            prepared.append((content, memory_type, metadata, item.get("embedding")))
        missing = [i for i, p in enumerate(prepared) if p[3] is None]
        if missing and (self.embedder is not None):
            vectors = await self._embed([prepared[i][0] for i in missing])
            for i, vector in zip(missing, vectors, strict=True):
                prepared[i] = (*prepared[i][:3], vector)
        return prepared

    async def _rows(
        self, conn: asyncpg.Connection, prepared: list[tuple[str, str, dict[str, Any], Any]]
    ) -> list[tuple[str, str, dict[str, Any], int | None, int | None, np.ndarray | None]]:
        key = self._space_key()
        has_vectors = any(p[3] is not None for p in prepared)
        if has_vectors and key is None:
            raise MemoryStoreError(
                "An embedding was given but the store has no embedding space",
                suggestion="Create the store with space=SpaceKey(...) or an embedder.",
            )
        space_id = await self._space_id(conn, key) if has_vectors and key is not None else None
        rows: list[tuple[str, str, dict[str, Any], int | None, int | None, np.ndarray | None]] = []
        for content, memory_type, metadata, vector in prepared:
            if vector is None:
                rows.append((content, memory_type, metadata, None, None, None))
            else:
                assert key is not None
                array = check_vector(vector, key.dimensions)
                rows.append((content, memory_type, metadata, space_id, key.dimensions, array))
        return rows

    async def store_memory(
        self,
        content: str,
        memory_type: str = "agent",
        *,
        metadata: dict[str, Any] | None = None,
        embedding: Sequence[float] | np.ndarray | None = None,
    ) -> int:
        """Store one memory in a transaction; embeds the content with the store's embedder when no vector."""
        ids = await self.batch_store_memories(
            [{"content": content, "memory_type": memory_type, "metadata": metadata, "embedding": embedding}]
        )
        return ids[0]

    async def batch_store_memories(self, items: Sequence[Mapping[str, Any]]) -> list[int]:
        """Store many memories in one transaction; returns their ids in input order."""
        if not items:
            return []
        prepared = await self._prepare(items)
        async with self.db.transaction() as conn:
            rows = await self._rows(conn, prepared)
            # Ids are drawn first and written explicitly, so which id belongs to which input is never a guess
            # about the order RETURNING hands rows back in.
            ids = [
                int(r[0])
                for r in await conn.fetch(
                    "SELECT nextval(pg_get_serial_sequence($1, 'id')) FROM generate_series(1, $2)",
                    "mahavishnu.memories",
                    len(rows),
                )
            ]
            ids.sort()
            columns = list(zip(*rows, strict=True))
            await conn.execute(
                """INSERT INTO mahavishnu.memories
                        (id, content, memory_type, metadata, space_id, dimensions, embedding)
                    OVERRIDING SYSTEM VALUE
                    SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::jsonb[], $5::int[], $6::int[],
                                         $7::vector[])""",
                ids,
                *[list(c) for c in columns[:5]],
                # Wrapped so the array encoder sees one element per vector, not a nested array of floats.
                [None if v is None else Vector(v) for v in columns[5]],
            )
        return ids

    async def get_memory(self, memory_id: int) -> dict[str, Any] | None:
        async with self.db.connection() as conn:
            row = await conn.fetchrow("SELECT * FROM mahavishnu.memories WHERE id = $1", memory_id)
        return _memory_dict(row) if row else None

    async def delete_memories(self, memory_ids: Sequence[int]) -> int:
        async with self.db.connection() as conn:
            status = await conn.execute(
                "DELETE FROM mahavishnu.memories WHERE id = ANY($1::bigint[])", list(memory_ids)
            )
        return int(status.split()[-1])

    async def vector_search(
        self,
        query: str | Sequence[float] | np.ndarray,
        *,
        k: int = 10,
        memory_types: Sequence[str] | None = None,
        threshold: float | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """The k memories most similar (cosine) to a text or vector, in the store's space only.

        `memory_types` restricts the types, `threshold` drops results below that similarity (-1..1),
        `metadata` keeps memories whose metadata contains it. Exact search: ties go to the lower id.
        """
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= 10_000:
            raise MemoryStoreError(f"k must be an integer between 1 and 10000, got {k!r}")
        if threshold is not None and not -1.0 <= float(threshold) <= 1.0:
            raise MemoryStoreError(f"threshold is a cosine similarity between -1 and 1, got {threshold!r}")
        types = [check_memory_type(t) for t in memory_types] if memory_types is not None else None
        if isinstance(query, str):
            check_text(query, "query")
            vector: Any = (await self._embed([query], queries=True))[0]
        else:
            vector = query
        key = self._space_key()
        if key is None:
            raise MemoryStoreError(
                "The store has no embedding space to search",
                suggestion="Create it with space=... or embedder=...",
            )
        array = check_vector(vector, key.dimensions, "query vector")
        filters = check_metadata(metadata) if metadata is not None else None
        async with self.db.connection() as conn:
            space_id = await self._space_id(conn, key)
            rows = await conn.fetch(
                """SELECT id, memory_type, content, metadata, created_at, updated_at,
                           1 - (embedding <=> $1) AS similarity
                      FROM mahavishnu.memories
                     WHERE space_id = $2
                       AND ($3::text[] IS NULL OR memory_type = ANY($3::text[]))
                       AND ($4::jsonb IS NULL OR metadata @> $4::jsonb)
                       AND ($5::float8 IS NULL OR 1 - (embedding <=> $1) >= $5::float8)
                     ORDER BY embedding <=> $1, id
                     LIMIT $6""",
                array,
                space_id,
                types,
                filters,
                threshold,
                k,
            )
        return [_memory_dict(r, with_similarity=True) for r in rows]
