"""The embeddings of one ingest run in flight: each chunk content is embedded once, however many batches hold it.

A batch asks the database which of its contents the cache of the active space lacks; of those, a content no
other batch is embedding is embedded by this batch (its future is shared), the rest are awaited. Once a
writer has committed a batch, its vectors are known to be stored and are not looked up again.
"""

from __future__ import annotations

import asyncio
from typing import Any

from mahavishnu_assets.database.pool import Database
from mahavishnu_assets.errors import EmbeddingUnavailableError
from mahavishnu_assets.ingest import store
from mahavishnu_assets.ingest.batch import Batch
from mahavishnu_assets.ingest.embed import Embedder


class EmbeddingsInFlight:
    """Vectors one run is computing (shared futures) and those it has committed, by content hash."""

    def __init__(self, db: Database, embedder: Embedder) -> None:
        self.db = db
        self.embedder = embedder
        self._pending: dict[bytes, asyncio.Future[Any]] = {}
        self.committed: set[bytes] = set()

    async def embed_texts(self, texts: list[str]) -> list[Any]:
        """float32 vectors (numpy rows, either byte order) or None for refused inputs."""
        return await self.embedder.embed_partial(texts)

    async def embed_batch(self, batch: Batch, space_id: int) -> None:
        """Give `batch` a vector (or a refusal) for every content the cache lacks.

        When the servers keep failing some of its contents, the batch keeps what was embedded, lists the rest
        in `batch.unavailable` and `EmbeddingUnavailableError` is raised: the run sets the batch aside, and
        calling this again later asks only for what is still missing."""
        batch.unavailable = set()
        needed = batch.needed()
        if not needed:
            return
        candidates = [
            h
            for h in needed
            if h not in self.committed and h not in batch.vectors and h not in batch.rejected
        ]
        if not candidates:
            return
        async with self.db.connection() as conn:
            present = await store.existing_embeddings(conn, space_id, candidates)
        mine: list[bytes] = []
        theirs: dict[bytes, asyncio.Future[Any]] = {}
        loop = asyncio.get_running_loop()
        for h in candidates:
            # Written by another batch while we looked in the database: in the cache now.
            if h in present or h in self.committed:
                continue
            future = self._pending.get(h)
            if future is None:
                future = self._pending[h] = loop.create_future()
                batch.owned[h] = future
                mine.append(h)
            else:
                theirs[h] = future
        failure: EmbeddingUnavailableError | None = None
        if mine:
            missing: set[int] = set()
            try:
                vectors = await self.embed_texts([needed[h] for h in mine])
            except EmbeddingUnavailableError as exc:
                if exc.vectors is None or len(exc.vectors) != len(mine):
                    self._fail(batch, mine, exc)
                    raise
                vectors, missing, failure = exc.vectors, set(exc.missing), exc
            except BaseException as exc:
                self._fail(batch, mine, exc)
                raise
            vectors = wire(vectors)
            for i, (h, vector) in enumerate(zip(mine, vectors, strict=True)):
                if i in missing:
                    assert failure is not None
                    self._fail(batch, [h], failure)
                    batch.unavailable.add(h)
                    continue
                batch.owned[h].set_result(vector)
                if vector is None:
                    batch.rejected.add(h)
                else:
                    batch.vectors[h] = vector
                    batch.mine.add(h)
                    batch.computed += 1
        for h, future in theirs.items():
            try:
                vector = await future
            except EmbeddingUnavailableError as exc:
                # The batch embedding it gave up on it: so does this one, for now.
                batch.unavailable.add(h)
                failure = failure or exc
                continue
            if vector is None:
                batch.rejected.add(h)
            else:
                batch.vectors[h] = vector
        if failure is not None:
            raise failure

    def _fail(self, batch: Batch, hashes: list[bytes], exc: BaseException) -> None:
        """The in-flight entries of `hashes` end with `exc` (batches waiting for them learn it) and go."""
        for h in hashes:
            future = batch.owned[h]
            self._forget(h, future)
            if not future.done():
                future.set_exception(exc if isinstance(exc, Exception) else asyncio.CancelledError())
                future.exception()  # marked retrieved: the batch's own error is what gets reported

    def recover(self, batch: Batch) -> None:
        """Drop from `batch.unavailable` what other batches have embedded since (stored, or still in flight
        with its vector), taking those vectors: a batch left incomplete then lacks only what nobody has."""
        for h in list(batch.unavailable):
            future = self._pending.get(h)
            if h in self.committed:
                batch.unavailable.discard(h)
            elif future is not None and future.done() and not future.cancelled() and not future.exception():
                vector = future.result()
                batch.unavailable.discard(h)
                if vector is None:
                    batch.rejected.add(h)
                else:
                    batch.vectors[h] = vector

    def written(self, batch: Batch, stored: set[bytes]) -> None:
        """`batch` is committed with the vectors `stored`: later batches need not look them up."""
        self.committed.update(stored)
        for h, future in batch.owned.items():
            self._forget(h, future)

    def _forget(self, content_hash: bytes, future: asyncio.Future[Any]) -> None:
        """Drop an in-flight entry, only if it is still the one this batch created (another may have replaced
        it after this batch's vector was written)."""
        if self._pending.get(content_hash) is future:
            del self._pending[content_hash]


def wire(vectors: list[Any]) -> list[Any]:
    """Vectors in pgvector's wire format for the writers' COPY (None stays None)."""
    import numpy as np

    present = [v for v in vectors if v is not None]
    if not present:
        return vectors
    encoded = iter(store.vector_wire(np.asarray(present, dtype=">f4")))
    return [None if v is None else next(encoded) for v in vectors]
