"""The embedder a long-lived process's queries go through: a deadline on every call, concurrent queries in one
request.

A server answering many agents embeds one short text per search or recall. Sent one by one, each costs a whole
request to the embedding server (on Ollama, a pass over the model); queued here, the queries that arrive while
a request is in flight go together in the next one, so under load the requests carry many texts and at rest a
query is sent at once (there is no waiting window). Every call ends within `seconds`: a hung embedding server is
an EmbeddingError in time, and a request that hangs frees its slot at the same deadline.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, TypeVar

from mahavishnu_assets.errors import EmbeddingError
from mahavishnu_assets.ingest.embed import EmbeddingRejectedError

if TYPE_CHECKING:
    from mahavishnu_assets.ingest.embed import Embedder, SpaceKey

logger = logging.getLogger(__name__)

T = TypeVar("T")


class QueryEmbedder:
    """An `Embedder` around another: single queries are batched with the other callers', calls have a
    deadline."""

    def __init__(self, inner: Embedder, seconds: float, *, batch_size: int = 64, in_flight: int = 2) -> None:
        self.inner = inner
        self.seconds = seconds
        self.batch_size = max(1, batch_size)
        self.in_flight = max(1, in_flight)
        self._pending: list[tuple[str, asyncio.Future[list[float]]]] = []
        self._running: set[asyncio.Task[None]] = set()

    @property
    def key(self) -> SpaceKey:
        return self.inner.key

    @key.setter
    def key(self, value: SpaceKey) -> None:
        self.inner.key = value

    @property
    def announcement(self) -> str | None:
        return self.inner.announcement

    @announcement.setter
    def announcement(self, value: str | None) -> None:
        self.inner.announcement = value

    def _timed_out(self) -> EmbeddingError:
        return EmbeddingError(
            f"The embedding server gave no answer within {self.seconds:g}s",
            suggestion="Check that Ollama runs and is not overloaded (OLLAMA_HOST), or raise ollama.timeout_seconds.",
        )

    async def _within(self, call: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(self.seconds):
                return await call
        except TimeoutError:
            raise self._timed_out() from None

    async def probe(self) -> SpaceKey:
        return await self._within(self.inner.probe())

    async def embed_partial(self, texts: list[str]) -> list[Any]:
        return await self._within(self.inner.embed_partial(texts))

    async def embed(self, texts: list[str]) -> list[list[float]]:
        return await self._within(self.inner.embed(texts))

    async def embed_query(self, text: str) -> list[float]:
        return (await self.embed_queries([text]))[0]

    async def embed_queries(self, texts: list[str]) -> list[list[float]]:
        """Queries, with the model's query prefix; a single one waits for the next shared request."""
        if len(texts) != 1:
            return await self._within(self.inner.embed_queries(texts))
        future: asyncio.Future[list[float]] = asyncio.get_running_loop().create_future()
        self._pending.append((texts[0], future))
        self._start()
        try:
            return [await self._within(asyncio.shield(future))]
        except BaseException:
            # Given up on (deadline, cancelled caller): whatever the batch later says is read, not logged.
            future.add_done_callback(_consume)
            raise

    def _start(self) -> None:
        while self._pending and len(self._running) < self.in_flight:
            batch, self._pending = self._pending[: self.batch_size], self._pending[self.batch_size :]
            task = asyncio.get_running_loop().create_task(self._send(batch))
            self._running.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._start()

    async def _send(self, batch: list[tuple[str, asyncio.Future[list[float]]]]) -> None:
        try:
            vectors = await self._within(self.inner.embed_queries([text for text, _ in batch]))
        except EmbeddingRejectedError as exc:
            # The refused queries fail alone; the others go again in the next request.
            refused = set(exc.indexes)
            for i, (_, future) in enumerate(batch):
                if i in refused and not future.done():
                    future.set_exception(
                        EmbeddingError(
                            "The embedding server refused this text", suggestion="Rephrase it or shorten it."
                        )
                    )
            self._pending[:0] = [item for i, item in enumerate(batch) if i not in refused]
            return
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), vector in zip(batch, vectors, strict=True):
            if not future.done():
                future.set_result(list(vector))

    def assume_dimensions(self, dimensions: int) -> None:
        assume = getattr(self.inner, "assume_dimensions", None)
        if assume is not None:
            assume(dimensions)

    async def aclose(self) -> None:
        for task in list(self._running):
            task.cancel()
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        await self.inner.aclose()


def _consume(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
