"""The embedding space a run writes into: the embedder's key and its row in `mahavishnu.embedding_spaces`."""

from __future__ import annotations

from typing import Any

from mahavishnu_assets.ingest.embed import Embedder, SpaceKey, ensure_space, stored_spaces


async def resolve_space(conn: Any, embedder: Embedder) -> tuple[SpaceKey, int]:
    """The embedder's space and its id (created on first use).

    An Ollama model's size is taken from the database when its space is known, so a run with nothing to
    embed sends no request at all; the first real request checks it.
    """
    key = embedder.key
    if not key.dimensions:
        rows = await stored_spaces(conn, key)
        assume = getattr(embedder, "assume_dimensions", None)
        if len(rows) == 1 and assume is not None:
            assume(rows[0][1])
            return embedder.key, rows[0][0]
        key = await embedder.probe()
    return key, await ensure_space(conn, key)
