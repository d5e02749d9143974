"""The official Ollama client, with JSON handled by orjson and vectors left to the caller's one numpy pass.

An `/api/embed` answer is mostly floats: 64 vectors of 768 dimensions are about 0.5 MB of JSON. The standard
library's decoder spends about 5 ms on them (orjson 1.5 ms), and validating the 49,000 floats as Python objects
in the response model another 1 ms; the embedder then converts, counts and checks them once more with numpy
(`embed._check_vectors`). Together that was a tenth of a first ingest's CPU. Requests, errors and the response
type stay the official client's; what orjson refuses (NaN, huge integers, lone surrogates) goes the client's
own way, with its own errors.
"""

from __future__ import annotations

import json
from typing import Any

import ollama
import orjson


def loads(content: bytes) -> Any:
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return json.loads(content)


class AsyncClient(ollama.AsyncClient):
    async def _request(self, cls: Any, *args: Any, stream: bool = False, **kwargs: Any) -> Any:
        if stream:
            return await super()._request(cls, *args, stream=True, **kwargs)
        body = _encoded(kwargs.get("json"))
        if body is not None:
            # The client's default headers already say application/json.
            kwargs = {k: v for k, v in kwargs.items() if k != "json"} | {"content": body}
        response = await self._request_raw(*args, **kwargs)
        return _parsed(cls, loads(response.content))


def _encoded(payload: Any) -> bytes | None:
    if payload is None:
        return None
    try:
        return orjson.dumps(payload)
    except TypeError:
        return None


def _parsed(cls: Any, data: Any) -> Any:
    if cls is ollama.EmbedResponse and isinstance(data, dict):
        vectors = data.get("embeddings")
        if isinstance(vectors, list) and all(type(v) is list for v in vectors):
            # Every other field is validated; the floats are the caller's to check (count, size, numeric, finite).
            response = cls(**{**data, "embeddings": []})
            response.embeddings = vectors
            return response
    return cls(**data)
