"""The official Ollama client, with JSON handled by orjson and vectors left to the caller's one numpy pass.

An `/api/embed` answer is mostly floats: 64 vectors of 768 dimensions are about 0.5 MB of JSON. The standard
library's decoder spends about 5 ms on them (orjson 1.5 ms), and validating the 49,000 floats as Python objects
in the response model another 1 ms; the embedder then converts, counts and checks them once more with numpy
(`embed._check_vectors`). Together that was a tenth of a first ingest's CPU. Requests, errors and the response
type stay the official client's; what orjson refuses (NaN, huge integers, lone surrogates) goes the client's
own way, with its own errors.

An embed answer's vectors go further: simdjson parses them straight into one float64 matrix, without the 49,000
Python floats a batch (`orjson.loads` plus numpy's conversion took 2.2 ms per 64 x 768 answer, this 1.0 ms;
with real embeddings' longer numbers 3.3 against 1.5 ms). Only a well-formed answer takes that way: anything
else (wrong nesting, vectors of different sizes, a non-number, invalid JSON) is decoded as above, so the
caller's checks see it and say what is wrong.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import ollama
import orjson
import simdjson


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
        if cls is ollama.EmbedResponse:
            answer = _embed_answer(response.content)
            if answer is not None:
                return answer
        return _parsed(cls, loads(response.content))


def _encoded(payload: Any) -> bytes | None:
    if payload is None:
        return None
    try:
        return orjson.dumps(payload)
    except TypeError:
        return None


def _embed_answer(content: bytes) -> ollama.EmbedResponse | None:
    """An embed answer with its vectors as one (count, dimensions) float64 matrix, or None to decode it as usual."""
    try:
        doc = simdjson.Parser().parse(content)
    except (ValueError, RuntimeError):  # RuntimeError: nested deeper than simdjson goes
        return None
    if not isinstance(doc, simdjson.Object):
        return None
    vectors = doc.get("embeddings")
    if not isinstance(vectors, simdjson.Array):
        return None
    sizes = {len(v) if isinstance(v, simdjson.Array) else -1 for v in vectors}
    # The buffer below is flat: one '[' per vector plus the list's own proves nothing is nested deeper.
    if len(sizes) > 1 or -1 in sizes or content.count(b"[") != len(vectors) + 1:
        return None
    try:
        flat = np.frombuffer(vectors.as_buffer(of_type="d"), dtype=np.float64)
    except (TypeError, ValueError):
        return None
    fields = {key: _plain(doc[key]) for key in doc.keys() if key != "embeddings"}
    try:
        response = ollama.EmbedResponse(**fields, embeddings=[])
    except ValueError:
        return None
    # In place of the declared lists of floats: the embedder's check takes either.
    matrix: Any = flat.reshape(len(vectors), sizes.pop() if sizes else 0)
    response.embeddings = matrix
    return response


def _plain(value: Any) -> Any:
    if isinstance(value, simdjson.Object):
        return value.as_dict()
    if isinstance(value, simdjson.Array):
        return value.as_list()
    return value


def _parsed(cls: Any, data: Any) -> Any:
    if cls is ollama.EmbedResponse and isinstance(data, dict):
        vectors = data.get("embeddings")
        if isinstance(vectors, list) and all(type(v) is list for v in vectors):
            # Every other field is validated; the floats are the caller's to check (count, size, numeric, finite).
            response = cls(**{**data, "embeddings": []})
            response.embeddings = vectors
            return response
    return cls(**data)
