"""The official Ollama client, with its answers decoded by orjson through httpx's public transport interface.

`ollama.AsyncClient(**kwargs)` hands its keyword arguments to `httpx.AsyncClient`, so a `transport` is ours to
give. Ours sends requests through httpx's own transport and returns responses whose `json()` is orjson's; the
client, its requests, its errors and its response types are untouched. What orjson refuses (NaN, lone
surrogates) goes to httpx's own decoder, with its own errors.

Why: an `/api/embed` answer is mostly floats (64 vectors of 768 dimensions are about 0.5 MB of JSON), and a
first ingest decodes one per 64 chunks on its event loop. Against the stub (zero compute cost), the client's CPU
per such answer is about 14 ms with the standard decoder and 6.3 ms with orjson
(`benchmarks/embed_decode_bench.py`). A first ingest of sqlalchemy 2.1.9 (49,274 embeddings, 3 alternating
runs, a busy 2-core machine) took a median 15.3 CPU-s in the command's process and 95 s wall with the plain
client, 9.1 CPU-s and 58 s with this transport.

This module is the one place that imports the `ollama` package (others take it from here): the package builds a
default client from OLLAMA_HOST when it is imported, and that parser takes one URL, so OLLAMA_HOST naming
several servers separated by commas would fail the import. The import therefore sees only the first of them;
the variable is put back right after, and every client of ours is given its host explicitly.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import orjson


@contextmanager
def _one_ollama_host() -> Iterator[None]:
    value = os.environ.get("OLLAMA_HOST")
    if value is None or "," not in value:
        yield
        return
    os.environ["OLLAMA_HOST"] = value.split(",", 1)[0].strip()
    try:
        yield
    finally:
        os.environ["OLLAMA_HOST"] = value


with _one_ollama_host():
    import ollama


class OrjsonResponse(httpx.Response):
    """An httpx response whose JSON is decoded by orjson (the standard decoder for what orjson refuses)."""

    def json(self, **kwargs: Any) -> Any:
        if not kwargs:
            try:
                return orjson.loads(self.content)
            except orjson.JSONDecodeError:
                pass
        return super().json(**kwargs)


class OrjsonTransport(httpx.AsyncBaseTransport):
    """httpx's own transport, answering with `OrjsonResponse`s."""

    def __init__(self, **kwargs: Any) -> None:
        self.inner = httpx.AsyncHTTPTransport(**kwargs)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        return OrjsonResponse(
            response.status_code,
            headers=response.headers,
            stream=response.stream,
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self.inner.aclose()


def make_client(host: str, timeout: float) -> ollama.AsyncClient:
    """An official client for `host`; close it with `await client.close()`."""
    return ollama.AsyncClient(host=host, timeout=timeout, transport=OrjsonTransport())
