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

from mahavishnu_assets.errors import EmbeddingError, EmbeddingMismatchError

if TYPE_CHECKING:
    import asyncpg

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


def normalize_model_name(model: str) -> str:
    """`nomic-embed-text` and `nomic-embed-text:latest` are one model, so one space."""
    return model[: -len(":latest")] if model.endswith(":latest") else model


@dataclass
class EmbedStats:
    """What an embedder did, for results and benchmarks."""

    requests: int = 0
    texts: int = 0
    retries: int = 0
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
    host: str
    model: str
    timeout_seconds: float = 60.0
    batch_size: int = 64
    concurrency: int = 4
    max_retries: int = 4
    retry_backoff_seconds: float = 0.5
    max_input_chars: int = 8000
    dimensions: int | None = None  # known in advance (or learnt by probe)
    keep_alive: str | None = None
    # None: the model card's (ingest/model_prefixes.py); "" for none.
    document_prefix: str | None = None
    query_prefix: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class OllamaEmbedder:
    """Embeddings from an Ollama server through `ollama.AsyncClient.embed`.

    Batches run with bounded concurrency; timeouts, 5xx and connection errors are retried with exponential
    backoff; a 4xx is never retried, but a batch refused for its input is split in halves until the one bad
    input is isolated (reported through `embed_partial`). Returned vectors are checked for count, size and
    finiteness: a mismatch raises `EmbeddingMismatchError` and nothing of that batch is returned. Documents
    and queries get the model's prefixes (`model_prefixes`) unless the options name others.
    """

    def __init__(self, options: OllamaOptions, *, announcement: str | None = None) -> None:
        from mahavishnu_assets.ingest.model_prefixes import model_prefixes

        self.options = options
        self.announcement = announcement
        self.model = options.model
        document, query = model_prefixes(options.model)
        self.key = SpaceKey(
            OLLAMA_PROVIDER,
            normalize_model_name(options.model),
            options.dimensions or 0,
            document if options.document_prefix is None else options.document_prefix,
            query if options.query_prefix is None else options.query_prefix,
        )
        self.stats = EmbedStats()
        self._ollama: Any = None
        self._semaphore: asyncio.Semaphore | None = None
        self._probe_lock: asyncio.Lock | None = None

    # -- plumbing ------------------------------------------------------------
    def _connect(self) -> Any:
        if self._ollama is None:
            from mahavishnu_assets.ingest.ollama_client import make_client

            self._ollama = make_client(self.options.host, self.options.timeout_seconds)
            self._semaphore = asyncio.Semaphore(self.options.concurrency)
            self._probe_lock = asyncio.Lock()
        return self._ollama

    async def aclose(self) -> None:
        client, self._ollama = self._ollama, None
        if client is not None:
            await client.close()

    def _prepare(self, text: str, prefix: str) -> str:
        # Ollama truncates to the model's context itself (truncate=True); the character cap keeps requests
        # small and bounded even for a server that does not. The prefix goes first, so it is never cut.
        text = text[: self.options.max_input_chars]
        return prefix + (text if text.strip() else "(empty)")

    # -- one request ---------------------------------------------------------
    async def _call(self, texts: list[str]) -> Any:
        """One /api/embed call with retries on transient failures; returns the raw embeddings."""
        import httpx
        import ollama

        client = self._connect()
        assert self._semaphore is not None
        attempt = 0
        while True:
            try:
                async with self._semaphore:
                    started = asyncio.get_running_loop().time()
                    # httpx times each read; a server that trickles bytes would never trip that, so the whole
                    # answer has the same deadline (Ollama sends nothing until a batch is computed).
                    async with asyncio.timeout(self.options.timeout_seconds):
                        response = await client.embed(
                            model=self.model,
                            input=texts,
                            truncate=True,
                            keep_alive=self.options.keep_alive,
                            **self.options.extra,
                        )
                    self.stats.seconds += asyncio.get_running_loop().time() - started
                self.stats.requests += 1
                return response.embeddings
            except ollama.ResponseError as exc:
                status = exc.status_code
                if 400 <= status < 500:
                    raise
                error: BaseException = exc
                reason = f"HTTP {status}: {str(exc.error)[:200]}"
            except TimeoutError as exc:
                error = exc
                reason = f"Timeout: no whole answer within {self.options.timeout_seconds:g}s"
            except (httpx.TimeoutException, httpx.TransportError, ConnectionError, OSError) as exc:
                error = exc
                reason = f"{exc.__class__.__name__}: {str(exc)[:200] or 'no detail'}"
            except ValueError as exc:
                answer_error = self._answer_error(exc)
                if answer_error is None:
                    raise
                raise answer_error from None
            if attempt >= self.options.max_retries:
                raise EmbeddingError(
                    f"Ollama at {self.options.host} failed {attempt + 1} times for model {self.model!r} "
                    f"({reason})",
                    suggestion="Check that Ollama runs (OLLAMA_HOST), or raise ollama.timeout_seconds / "
                    "ollama.max_retries; a re-run resumes where this one stopped.",
                ) from error
            delay = self.options.retry_backoff_seconds * (2**attempt) * (0.75 + random.random() / 2)
            attempt += 1
            self.stats.retries += 1
            logger.warning(
                "Ollama embed failed (%s); retry %d/%d in %.2fs",
                reason,
                attempt,
                self.options.max_retries,
                delay,
            )
            await asyncio.sleep(delay)

    def _answer_error(self, exc: ValueError) -> EmbeddingError | None:
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
            f"{self.options.host} answered /api/embed with something that is not an embedding response "
            f"({exc.__class__.__name__}); nothing of this batch was written",
            suggestion="Check that OLLAMA_HOST (ollama.host) points at an Ollama server.",
        )

    def _model_error(self, exc: Any) -> EmbeddingError:
        if exc.status_code == 404:
            return EmbeddingError(
                f"Ollama at {self.options.host} does not have model {self.model!r} ({str(exc.error)[:200]})",
                suggestion=f"Run `ollama pull {self.model}` or set MAHAVISHNU_EMBED_MODEL to a pulled model.",
            )
        return EmbeddingError(
            f"Ollama at {self.options.host} refused the request with HTTP {exc.status_code}: "
            f"{str(exc.error)[:200]}",
        )

    async def _embed_batch(self, texts: list[str], offset: int, rejected: list[int]) -> list[Any]:
        """Embed one batch; on an input-shaped 4xx split it to isolate the inputs the server refuses."""
        import ollama

        try:
            raw = await self._call(texts)
        except ollama.ResponseError as exc:
            if exc.status_code not in _INPUT_STATUSES:
                raise self._model_error(exc) from None
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
            left, right = await asyncio.gather(
                self._embed_batch(texts[:half], offset, rejected),
                self._embed_batch(texts[half:], offset + half, rejected),
            )
            return left + right
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
        parts = await asyncio.gather(
            *(
                self._embed_batch(prepared[start : start + size], start, rejected)
                for start in range(0, len(prepared), size)
            )
        )
        return [vector for part in parts for vector in part]

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
        """Learn the model's dimensions with one tiny request (once)."""
        self._connect()
        assert self._probe_lock is not None
        async with self._probe_lock:
            if self.key.dimensions:
                return self.key
            import numpy as np
            import ollama

            try:
                raw = await self._call([PROBE_TEXT])
            except ollama.ResponseError as exc:
                raise self._model_error(exc) from None
            if not isinstance(raw, list | tuple | np.ndarray) or len(raw) != 1 or not len(raw[0]):
                raise EmbeddingMismatchError(
                    f"Ollama model {self.model!r} returned no usable vector for the dimension probe"
                )
            dimensions = len(raw[0])
            if not 1 <= dimensions <= 16000:
                raise EmbeddingMismatchError(f"Ollama model {self.model!r} returned {dimensions} dimensions")
            _check_vectors(raw, 1, dimensions, f"Ollama model {self.model!r}")
            self.key = self.key.sized(dimensions)
            logger.info("Embedding space %s", self.key.describe())
            return self.key

    async def embed_partial(self, texts: list[str]) -> list[Any]:
        """float32 vectors of documents in input order; None for an input the server refuses even alone."""
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
        model=settings.embed_model,
        timeout_seconds=o.timeout_seconds,
        batch_size=o.batch_size,
        concurrency=o.concurrency,
        max_retries=o.max_retries,
        retry_backoff_seconds=o.retry_backoff_seconds,
        max_input_chars=o.max_input_chars,
        document_prefix=o.document_prefix,
        query_prefix=o.query_prefix,
    )


def ollama_reachable(host: str, timeout: float = 1.5) -> str | None:
    """None when an Ollama server answers at `host`, else why not."""
    import httpx

    try:
        response = httpx.get(f"{host.rstrip('/')}/api/version", timeout=timeout)
    except httpx.HTTPError as exc:
        return f"{exc.__class__.__name__}"
    if response.status_code != 200:
        return f"HTTP {response.status_code}"
    try:
        version = response.json().get("version")
    except (ValueError, AttributeError):
        version = None
    # Any web server answers 200; only Ollama says which version it is.
    return None if isinstance(version, str) else "not an Ollama server: /api/version names no version"


def make_embedder(settings: Settings) -> Embedder:
    """The embedder MAHAVISHNU_EMBEDDER asks for; `auto` falls back to `local` (WordLlama) loudly when Ollama
    is away. `hashing` (word-hash vectors, no semantics) exists for tests only."""
    from mahavishnu_assets.ingest.local_embed import HashingEmbedder, WordLlamaEmbedder

    choice = settings.embedder
    if choice == "local":
        return WordLlamaEmbedder()
    if choice == "hashing":
        return HashingEmbedder(settings.ollama.local_dimensions)
    if choice == "ollama":
        return OllamaEmbedder(ollama_options(settings))
    why = ollama_reachable(settings.ollama.host)
    if why is None:
        return OllamaEmbedder(ollama_options(settings))
    fallback = WordLlamaEmbedder()
    announcement = (
        f"Ollama is not reachable at {settings.ollama.host} ({why}); using the offline local embedder "
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
