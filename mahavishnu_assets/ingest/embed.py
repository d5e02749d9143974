"""Embedders (Ollama through its official client; offline ones in `local_embed`) and their embedding spaces.

Every vector belongs to a space `(provider, model, dimensions, document prefix, query prefix)`; vectors of
different spaces are never mixed. `embed` turns documents into vectors, `embed_queries` search queries (with
the model's query prefix). Call `await embedder.probe()` once before reading `embedder.key`: an Ollama
model's size is learnt from it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from mahavishnu_assets.errors import EmbeddingError, EmbeddingMismatchError, EmbeddingUnavailableError
from mahavishnu_assets.ingest.servers import (
    ServerFailure,
    all_of,
    classify_failure,
    decorrelated_delay,
    ollama_reachable,
    uniform_size,
)

if TYPE_CHECKING:
    import asyncpg

    from mahavishnu_assets.ingest.servers import EmbedServer, ServerPool
    from mahavishnu_assets.settings import Settings

logger = logging.getLogger(__name__)

LOCAL_PROVIDER = "local"
OLLAMA_PROVIDER = "ollama"
PROBE_TEXT = "mahavishnu embedding dimension probe"
# HTTP statuses that blame the input rather than the server or the model: a batch is split to find the culprit.
_INPUT_STATUSES = frozenset({400, 413, 422})


@dataclass(frozen=True)
class SpaceKey:
    """An embedding space: vectors are comparable only within one."""

    provider: str
    model: str
    dimensions: int
    # Put before every document / query the model embeds (its card's instructions): part of the space, since
    # they change every vector.
    document_prefix: str = ""
    query_prefix: str = ""

    def describe(self) -> str:
        # The prefixes are left out: as the model card's they say nothing new, and this text is shown in every
        # report (`embedding_space`).
        return f"{self.provider}:{self.model}/{self.dimensions}"

    def sized(self, dimensions: int) -> SpaceKey:
        return dataclasses.replace(self, dimensions=dimensions)


class EmbeddingRejectedError(EmbeddingError):
    """The server refused particular inputs (4xx) even one at a time."""

    code = "embedding_rejected"
    default_suggestion = "The named inputs cannot be embedded by this model; they are skipped."

    def __init__(self, message: str, *, indexes: list[int], **details: Any) -> None:
        super().__init__(message, indexes=indexes, **details)
        self.indexes = indexes


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors of one space."""

    key: SpaceKey
    # Why this embedder was chosen when it was not asked for by name (auto fallback); None otherwise.
    announcement: str | None

    async def probe(self) -> SpaceKey: ...

    # Documents (with the space's document prefix).
    async def embed(self, texts: list[str]) -> list[list[float]]: ...

    # Documents as float32 numpy vectors in input order, None for an input the server refuses even alone.
    async def embed_partial(self, texts: list[str]) -> list[Any]: ...

    # Search queries (with the space's query prefix).
    async def embed_queries(self, texts: list[str]) -> list[list[float]]: ...

    async def embed_query(self, text: str) -> list[float]: ...

    async def aclose(self) -> None: ...


def encodable(text: str) -> str:
    """The text with lone surrogates (undecodable bytes of a file or of a command-line argument) as `?`: JSON
    requests and WordLlama's tokenizer take only text UTF-8 can encode, and would fail the whole batch."""
    return text if text.isascii() else text.encode("utf-8", "replace").decode("utf-8")


def normalize_model_name(model: str) -> str:
    """`nomic-embed-text` and `nomic-embed-text:latest` are one model, so one space."""
    return model[: -len(":latest")] if model.endswith(":latest") else model


@dataclass
class EmbedStats:
    """What an embedder did, for results and benchmarks."""

    requests: int = 0
    texts: int = 0
    retries: int = 0
    failures: int = 0  # requests that failed (each retried or given up)
    gave_up: int = 0  # requests that failed through all their attempts
    splits: int = 0
    rejected: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, float | int]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in self.__dict__.items()}


def _check_vectors(vectors: Any, count: int, dimensions: int, what: str) -> Any:
    """Count, size and finiteness of returned vectors as one float32 matrix; a mismatch rejects the batch.

    `vectors` are lists (as the client decodes them) or one matrix."""
    import numpy as np

    matrix = isinstance(vectors, np.ndarray) and vectors.ndim == 2
    if not (matrix or isinstance(vectors, list | tuple)) or len(vectors) != count:
        got = len(vectors) if matrix or isinstance(vectors, list | tuple) else type(vectors).__name__
        raise EmbeddingMismatchError(
            f"{what} returned {got} vectors for {count} inputs; nothing of this batch was written",
        )
    if matrix:
        sizes: list[int | str] = [vectors.shape[1]] if count else []
    else:
        sizes = [len(v) if isinstance(v, list | tuple) else type(v).__name__ for v in vectors]
    for i, size in enumerate(sizes):
        if size != dimensions:
            raise EmbeddingMismatchError(
                f"{what} returned a vector of {size} dimensions (input {i}), expected {dimensions}; "
                "nothing of this batch was written",
            )
    try:
        # Big-endian float32 is pgvector's wire format: the binary COPY then sends rows without converting.
        # A value too large for float32 becomes infinite, which the check below rejects.
        with np.errstate(over="ignore"):
            checked = np.asarray(vectors, dtype=">f4").reshape(count, dimensions)
        finite = bool(np.isfinite(checked).all())
    except (TypeError, ValueError, OverflowError):
        finite = False
    if not finite:
        raise EmbeddingMismatchError(
            f"{what} returned vectors with non-numeric or non-finite values; nothing of this batch was written",
        )
    return checked


@dataclass
class OllamaOptions:
    host: str  # one base URL, or several separated by commas
    model: str
    timeout_seconds: float = 60.0
    batch_size: int = 64
    concurrency: int = 4  # requests in flight per server
    max_retries: int = 4  # per request, in the main pass and again in each final pass
    retry_backoff_seconds: float = 0.5
    retry_budget_ratio: float = 0.1
    retry_budget_min: int = 20
    circuit_failures: int = 5
    circuit_cooldown_seconds: float = 1.0
    outage_seconds: float = 60.0
    max_input_chars: int = 8000
    dimensions: int | None = None  # known in advance (or learnt by probe)
    keep_alive: str | None = None
    # None: the model card's (ingest/model_prefixes.py); "" for none.
    document_prefix: str | None = None
    query_prefix: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    hosts: list[str] | None = None  # the servers as a list; wins over `host`

    @property
    def urls(self) -> list[str]:
        from mahavishnu_assets.settings import split_hosts

        return split_hosts(",".join(self.hosts)) if self.hosts else split_hosts(self.host)


class OllamaEmbedder:
    """Embeddings from one or several Ollama servers through `ollama.AsyncClient.embed`.

    Requests go to the least-loaded healthy server (`servers.ServerPool`); timeouts, 5xx, resets and refused
    connections are retried after a decorrelated-jitter delay, on another server when there is one, within the
    run's retry budget; a server failing again and again is benched (circuit breaker). A request that still
    fails raises `EmbeddingUnavailableError` carrying what the call did embed, so an ingest sets that batch aside
    for its final passes (`new_pass`). A 4xx is never retried, but a batch refused for its input is split in
    halves until the one bad input is isolated (reported through `embed_partial`). Returned vectors are checked
    for count, size and finiteness: a mismatch raises `EmbeddingMismatchError` and nothing of that batch is
    returned; with several servers, one answering another size (another model) or lacking the model is refused
    and the others go on. Documents and queries get the model's prefixes (`model_prefixes`) unless the options
    name others.
    """

    def __init__(self, options: OllamaOptions, *, announcement: str | None = None) -> None:
        from mahavishnu_assets.ingest.model_prefixes import model_prefixes
        from mahavishnu_assets.ingest.servers import RetryBudget

        self.options = options
        self.announcement = announcement
        self.model = options.model
        self.urls = options.urls
        document, query = model_prefixes(options.model)
        self.key = SpaceKey(
            OLLAMA_PROVIDER,
            normalize_model_name(options.model),
            options.dimensions or 0,
            document if options.document_prefix is None else options.document_prefix,
            query if options.query_prefix is None else options.query_prefix,
        )
        self.stats = EmbedStats()
        self.budget = RetryBudget(options.retry_budget_ratio, options.retry_budget_min)
        self._random = random.Random()
        self._pool: ServerPool | None = None
        self._probe_lock: asyncio.Lock | None = None

    # -- plumbing ------------------------------------------------------------
    def _connect(self) -> ServerPool:
        if self._pool is None:
            from mahavishnu_assets.ingest.servers import ServerPool

            o = self.options
            self._pool = ServerPool(
                self.urls,
                timeout=o.timeout_seconds,
                concurrency=o.concurrency,
                failures=o.circuit_failures,
                cooldown=o.circuit_cooldown_seconds,
                outage_seconds=o.outage_seconds,
            )
            self._probe_lock = asyncio.Lock()
        return self._pool

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.aclose()

    def new_pass(self) -> None:
        """Fresh attempts for requests set aside earlier (an ingest's final passes): each request has its
        max_retries again, outside the run's budget, and benched servers are probed at once."""
        self.budget.final = True
        if self._pool is not None:
            self._pool.new_pass()

    def server_stats(self) -> dict[str, dict[str, Any]]:
        """Per server: requests, failures, retries, texts and seconds so far; benched or refused."""
        pool = self._pool
        if pool is None:
            return {url: {} for url in self.urls}
        return {
            s.url: {**s.stats.to_dict(), "benched": s.breaker.benched, "refused": s.refused}
            for s in pool.servers
        }

    def _prepare(self, text: str, prefix: str) -> str:
        # Ollama truncates to the model's context itself (truncate=True); the character cap keeps requests
        # small and bounded even for a server that does not. The prefix goes first, so it is never cut.
        text = encodable(text[: self.options.max_input_chars])
        return prefix + (text if text.strip() else "(empty)")

    # -- one request ---------------------------------------------------------
    async def _send(self, server: EmbedServer, texts: list[str]) -> Any:
        """One /api/embed request to `server` (taken from the pool); its raw embeddings, or `ServerFailure`."""
        from mahavishnu_assets import telemetry

        loop = asyncio.get_running_loop()
        started = loop.time()
        where = {"server": server.label}
        try:
            # httpx times each read; a server that trickles bytes would never trip that, so the whole answer
            # has the same deadline (Ollama sends nothing until a batch is computed).
            async with asyncio.timeout(self.options.timeout_seconds):
                response = await server.client.embed(
                    model=self.model,
                    input=texts,
                    truncate=True,
                    keep_alive=self.options.keep_alive,
                    **self.options.extra,
                )
        except BaseException as exc:
            kind, reason = classify_failure(exc, self.options.timeout_seconds)
            if kind is not None:
                seconds = loop.time() - started
                telemetry.embed_requests.add(1, {**where, "outcome": "error"})
                telemetry.embed_request_duration.record(seconds, {**where, "outcome": "error"})
                telemetry.embed_failures.add(1, {**where, "kind": kind})
                server.stats.failures += 1
                self.stats.failures += 1
            if reason is not None:
                raise ServerFailure(kind or "error", reason) from exc
            if isinstance(exc, ValueError):
                answer_error = self._answer_error(exc, server.url)
                if answer_error is not None:
                    raise answer_error from None
            raise
        seconds = loop.time() - started
        telemetry.embed_requests.add(1, {**where, "outcome": "ok"})
        telemetry.embed_request_duration.record(seconds, {**where, "outcome": "ok"})
        server.stats.requests += 1
        server.stats.texts += len(texts)
        server.stats.seconds += seconds
        self.stats.requests += 1
        self.stats.seconds += seconds
        return response.embeddings

    async def _call(self, texts: list[str]) -> Any:
        """One request's life: sent to a server, sent again (elsewhere when possible) after transient failures
        while its attempts and the budget last; the raw embeddings."""
        from mahavishnu_assets import telemetry
        from mahavishnu_assets.ingest.ollama_client import ollama

        pool = self._connect()
        self.budget.requests += 1
        attempts = 0
        delay = self.options.retry_backoff_seconds  # the first retry waits 1 to 3 times it
        avoid: EmbedServer | None = None
        while True:
            server = await pool.acquire(avoid)
            try:
                raw = await self._send(server, texts)
            except ServerFailure as failure:
                pool.release(server, "failed")
                reason, error = failure.reason, failure
            except ollama.ResponseError as exc:
                pool.release(server, "ok")  # it answered: alive, whatever it thinks of the request
                if exc.status_code in _INPUT_STATUSES:
                    raise
                if exc.status_code == 404 and (server.refused or len(pool.live) > 1):
                    pool.refuse(server, f"does not have model {self.model!r}")
                    continue
                raise self._model_error(exc, server.url) from None
            except BaseException:
                pool.release(server, "abandoned")
                raise
            else:
                pool.release(server, "ok")
                size = uniform_size(raw)
                wrong = self.key.dimensions and size not in (None, self.key.dimensions)
                if wrong and (server.refused or len(pool.live) > 1):
                    # Another model behind this address: its vectors would not belong to this space.
                    pool.refuse(
                        server, f"answers {size}-dimension vectors, the space has {self.key.dimensions}"
                    )
                    continue
                return raw
            attempts += 1
            if attempts > self.options.max_retries or not self.budget.take():
                self.stats.gave_up += 1
                spent = attempts <= self.options.max_retries
                raise EmbeddingUnavailableError(
                    self._failed_message(server.url, attempts, reason)
                    + ("; the run's retry budget is spent" if spent else "")
                ) from error.__cause__
            delay = decorrelated_delay(self.options.retry_backoff_seconds, delay, self._random)
            self.stats.retries += 1
            server.stats.retries += 1
            telemetry.embed_retries.add(1, {"server": server.label})
            logger.warning(
                "Ollama embed failed at %s (%s); retry %d/%d in %.2fs",
                server.url,
                reason,
                attempts,
                self.options.max_retries,
                delay,
            )
            await asyncio.sleep(delay)
            avoid = server

    def _failed_message(self, url: str, attempts: int, reason: str) -> str:
        if len(self.urls) == 1:
            return f"Ollama at {url} failed {attempts} times for model {self.model!r} ({reason})"
        return f"Ollama failed {attempts} times for model {self.model!r}, last at {url} ({reason})"

    def _answer_error(self, exc: ValueError, url: str) -> EmbeddingError | None:
        """What an answer that does not decode into an EmbedResponse means (asking again will not help); None
        when the error is not about the answer (a text the client could not even encode, say)."""
        from json import JSONDecodeError

        from pydantic import ValidationError

        if isinstance(exc, ValidationError) and exc.title == "EmbedResponse":
            problems = exc.errors()
            if problems and all(e["loc"][:1] == ("embeddings",) and len(e["loc"]) == 3 for e in problems):
                # Every complaint is about a value inside a vector: an answer of the right shape, wrong numbers.
                return EmbeddingMismatchError(
                    f"Ollama model {self.model!r} returned vectors with non-numeric values; nothing of this "
                    "batch was written",
                )
        elif not isinstance(exc, JSONDecodeError):
            return None
        return EmbeddingError(
            f"{url} answered /api/embed with something that is not an embedding response "
            f"({exc.__class__.__name__}); nothing of this batch was written",
            suggestion="Check that OLLAMA_HOST (ollama.host) points at an Ollama server.",
        )

    def _model_error(self, exc: Any, url: str) -> EmbeddingError:
        if exc.status_code == 404:
            return EmbeddingError(
                f"Ollama at {url} does not have model {self.model!r} ({str(exc.error)[:200]})",
                suggestion=f"Run `ollama pull {self.model}` or set MAHAVISHNU_EMBED_MODEL to a pulled model.",
            )
        return EmbeddingError(
            f"Ollama at {url} refused the request with HTTP {exc.status_code}: {str(exc.error)[:200]}",
        )

    async def _embed_batch(self, texts: list[str], offset: int, rejected: list[int]) -> list[Any]:
        """Embed one batch; on an input-shaped 4xx split it to isolate the inputs the server refuses."""
        from mahavishnu_assets.ingest.ollama_client import ollama

        try:
            raw = await self._call(texts)
        except ollama.ResponseError as exc:
            if len(texts) == 1:
                logger.warning(
                    "Ollama refused input %d (HTTP %d: %s); it is skipped",
                    offset,
                    exc.status_code,
                    str(exc.error)[:200],
                )
                rejected.append(offset)
                self.stats.rejected += 1
                return [None]
            self.stats.splits += 1
            half = len(texts) // 2
            left, right = await all_of(
                self._embed_batch(texts[:half], offset, rejected),
                self._embed_batch(texts[half:], offset + half, rejected),
            )
            return list(left) + list(right)
        if not self.key.dimensions:
            await self.probe()
        checked = _check_vectors(raw, len(texts), self.key.dimensions, f"Ollama model {self.model!r}")
        self.stats.texts += len(texts)
        return list(checked)

    async def _vectors(self, texts: list[str], prefix: str) -> list[Any]:
        if not texts:
            return []
        if not self.key.dimensions:
            await self.probe()
        prepared = [self._prepare(t, prefix) for t in texts]
        size = self.options.batch_size
        rejected: list[int] = []
        missing: list[int] = []
        failures: list[EmbeddingUnavailableError] = []

        async def part(start: int) -> list[Any]:
            batch = prepared[start : start + size]
            try:
                return await self._embed_batch(batch, start, rejected)
            except EmbeddingUnavailableError as exc:
                # The other requests go on: what they embed is kept, these are asked again later.
                missing.extend(range(start, start + len(batch)))
                failures.append(exc)
                return [None] * len(batch)

        parts = await all_of(*(part(start) for start in range(0, len(prepared), size)))
        vectors = [vector for part_ in parts for vector in part_]
        if missing:
            first = failures[0]
            raise EmbeddingUnavailableError(
                f"{first.message}; {len(missing)} of {len(texts)} texts were not embedded",
                vectors=vectors,
                missing=sorted(missing),
                suggestion=first.suggestion,
            )
        return vectors

    async def _all(self, texts: list[str], prefix: str) -> list[list[float]]:
        vectors = await self._vectors(texts, prefix)
        bad = [i for i, v in enumerate(vectors) if v is None]
        if bad:
            raise EmbeddingRejectedError(f"Ollama refused {len(bad)} of {len(texts)} inputs", indexes=bad)
        return [v.tolist() for v in vectors]

    # -- public --------------------------------------------------------------
    def assume_dimensions(self, dimensions: int) -> None:
        """Take the model's size from an earlier run (no probe request); a wrong guess fails the size check."""
        if not self.key.dimensions:
            self.key = self.key.sized(dimensions)

    async def probe(self) -> SpaceKey:
        """Learn the model's dimensions (once): with several servers each one is asked, and servers answering
        different sizes are an error (they serve different models: one space, never mixed)."""
        pool = self._connect()
        assert self._probe_lock is not None
        async with self._probe_lock:
            if self.key.dimensions:
                return self.key
            if len(pool.servers) > 1:
                dimensions = await self._probe_each(pool)
            else:
                dimensions = self._probe_size(await self._probe_call())
            self.key = self.key.sized(dimensions)
            logger.info("Embedding space %s", self.key.describe())
            return self.key

    async def _probe_call(self) -> Any:
        from mahavishnu_assets.ingest.ollama_client import ollama

        try:
            return await self._call([PROBE_TEXT])
        except ollama.ResponseError as exc:
            raise self._model_error(exc, self.urls[0]) from None

    async def _probe_each(self, pool: ServerPool) -> int:
        """Ask every server once; a server that does not answer is benched and checked by the size of its
        answers later. None answering: the usual retries, on any server."""
        from mahavishnu_assets.ingest.ollama_client import ollama

        async def one(server: EmbedServer) -> int | None:
            pool.take(server)
            try:
                raw = await self._send(server, [PROBE_TEXT])
            except ServerFailure as failure:
                pool.release(server, "failed")
                pool.bench(server)
                logger.warning(
                    "Embedding server %s did not answer the probe (%s); benched", server.url, failure.reason
                )
                return None
            except ollama.ResponseError as exc:
                pool.release(server, "ok")
                pool.refuse(server, str(self._model_error(exc, server.url)))
                return None
            except BaseException:
                pool.release(server, "abandoned")
                raise
            pool.release(server, "ok")
            return self._probe_size(raw)

        servers = pool.live
        sizes = await all_of(*(one(s) for s in servers))
        answered = {s.url: size for s, size in zip(servers, sizes, strict=True) if size is not None}
        if len(set(answered.values())) > 1:
            listed = ", ".join(f"{url} {size}" for url, size in answered.items())
            raise EmbeddingMismatchError(
                f"The Ollama servers answer model {self.model!r} with vectors of different sizes ({listed}): "
                "they serve different models, whose vectors cannot share one space",
                suggestion="Serve the same model on every server in OLLAMA_HOST (`ollama pull "
                f"{self.model}` on each), or list only the servers that have it.",
            )
        if answered:
            return next(iter(answered.values()))
        return self._probe_size(await self._probe_call())

    def _probe_size(self, raw: Any) -> int:
        import numpy as np

        if not isinstance(raw, list | tuple | np.ndarray) or len(raw) != 1 or not len(raw[0]):
            raise EmbeddingMismatchError(
                f"Ollama model {self.model!r} returned no usable vector for the dimension probe"
            )
        dimensions = len(raw[0])
        if not 1 <= dimensions <= 16000:
            raise EmbeddingMismatchError(f"Ollama model {self.model!r} returned {dimensions} dimensions")
        _check_vectors(raw, 1, dimensions, f"Ollama model {self.model!r}")
        return dimensions

    async def embed_partial(self, texts: list[str]) -> list[Any]:
        """float32 vectors of documents in input order; None for an input the server refuses even alone.
        Raises `EmbeddingUnavailableError` (with the vectors it did get) when servers kept failing."""
        return await self._vectors(texts, self.key.document_prefix)

    async def embed(self, texts: list[str]) -> list[list[float]]:
        return await self._all(texts, self.key.document_prefix)

    async def embed_queries(self, texts: list[str]) -> list[list[float]]:
        return await self._all(texts, self.key.query_prefix)

    async def embed_query(self, text: str) -> list[float]:
        return (await self.embed_queries([text]))[0]


def ollama_options(settings: Settings) -> OllamaOptions:
    o = settings.ollama
    return OllamaOptions(
        host=o.host,
        hosts=o.urls,
        model=settings.embed_model,
        timeout_seconds=o.timeout_seconds,
        batch_size=o.batch_size,
        concurrency=o.concurrency,
        max_retries=o.max_retries,
        retry_backoff_seconds=o.retry_backoff_seconds,
        retry_budget_ratio=o.retry_budget_ratio,
        retry_budget_min=o.retry_budget_min,
        circuit_failures=o.circuit_failures,
        circuit_cooldown_seconds=o.circuit_cooldown_seconds,
        outage_seconds=o.outage_seconds,
        max_input_chars=o.max_input_chars,
        document_prefix=o.document_prefix,
        query_prefix=o.query_prefix,
    )


def make_embedder(settings: Settings) -> Embedder:
    """The embedder MAHAVISHNU_EMBEDDER asks for; `auto` falls back to `local` (WordLlama) loudly when no
    Ollama server answers. `hashing` (word-hash vectors, no semantics) exists for tests only."""
    from mahavishnu_assets.ingest.local_embed import HashingEmbedder, WordLlamaEmbedder

    choice = settings.embedder
    if choice == "local":
        return WordLlamaEmbedder()
    if choice == "hashing":
        return HashingEmbedder(settings.ollama.local_dimensions)
    if choice == "ollama":
        return OllamaEmbedder(ollama_options(settings))
    urls = settings.ollama.urls
    why = ollama_reachable(urls)
    if why is None:
        return OllamaEmbedder(ollama_options(settings))
    fallback = WordLlamaEmbedder()
    announcement = (
        f"Ollama is not reachable at {', '.join(urls)} ({why}); using the offline local embedder "
        f"(WordLlama, space {fallback.key.describe()}). "
        "Set MAHAVISHNU_EMBEDDER=ollama to require Ollama or =local to silence this."
    )
    logger.warning("%s", announcement)
    fallback.announcement = announcement
    return fallback


async def stored_spaces(conn: asyncpg.Connection, key: SpaceKey) -> list[tuple[int, int]]:
    """(id, dimensions) of the stored spaces of `key`'s provider, model and prefixes, oldest first; of its size
    only when that is known (an Ollama model's is learnt by a probe)."""
    rows = await conn.fetch(
        """SELECT id, dimensions FROM mahavishnu.embedding_spaces
            WHERE provider = $1 AND model = $2 AND document_prefix = $3 AND query_prefix = $4
              AND ($5 = 0 OR dimensions = $5)
            ORDER BY id""",
        key.provider,
        key.model,
        key.document_prefix,
        key.query_prefix,
        int(key.dimensions or 0),
    )
    return [(int(r["id"]), int(r["dimensions"])) for r in rows]


async def ensure_space(conn: asyncpg.Connection, key: SpaceKey) -> int:
    """The id of the space `key`, created on first use; safe when several processes race to create it."""
    if key.dimensions < 1:
        raise EmbeddingError(
            f"Embedding space {key.describe()} has no dimensions yet",
            suggestion="Call `await embedder.probe()` before using its space.",
        )
    values = (key.provider, key.model, key.dimensions, key.document_prefix, key.query_prefix)
    for _ in range(3):
        space_id = await conn.fetchval(
            """INSERT INTO mahavishnu.embedding_spaces (provider, model, dimensions, document_prefix, query_prefix)
               VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (provider, model, dimensions, document_prefix, query_prefix) DO NOTHING RETURNING id""",
            *values,
        )
        if space_id is None:
            space_id = await conn.fetchval(
                """SELECT id FROM mahavishnu.embedding_spaces
                    WHERE provider = $1 AND model = $2 AND dimensions = $3
                      AND document_prefix = $4 AND query_prefix = $5""",
                *values,
            )
        if space_id is not None:
            return int(space_id)
    raise EmbeddingError(f"Could not create embedding space {key.describe()}")
