"""The official Ollama client, decoding its answers with orjson.

An `/api/embed` answer is mostly floats: 64 vectors of 768 dimensions are about 0.5 MB of JSON, and the standard
library's decoder spends about 5 ms on them, three times orjson's. That was a tenth of a first ingest's CPU.
Requests, errors and response models stay the official client's: only the decoding of a whole (not streamed)
answer changes, and an answer orjson refuses (NaN, huge integers, bad UTF-8) is decoded as the client would.
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
        # The standard decoder accepts what orjson does not (NaN, big integers): it decides, as in the client.
        return json.loads(content)


class AsyncClient(ollama.AsyncClient):
    async def _request(self, cls: Any, *args: Any, stream: bool = False, **kwargs: Any) -> Any:
        if stream:
            return await super()._request(cls, *args, stream=True, **kwargs)
        response = await self._request_raw(*args, **kwargs)
        return cls(**loads(response.content))
