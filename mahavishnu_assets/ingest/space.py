"""The embedding space a run writes into: the embedder's key and its row in `mahavishnu.embedding_spaces`."""

from __future__ import annotations

from typing import Any

from mahavishnu_assets.ingest.embed import Embedder, SpaceKey, ensure_space


async def resolve_space(conn: Any, embedder: Embedder) -> tuple[SpaceKey, int]:
    """The embedder's space and its id (created on first use).

    An Ollama model's size is taken from the database when its space is known, so a run with nothing to
    embed sends no request at all; the first real request checks it.
    """
    key = embedder.key
    if not key.dimensions:
        rows = await conn.fetch(
            "SELECT id, dimensions FROM mahavishnu.embedding_spaces WHERE provider = $1 AND model = $2",
            key.provider,
            key.model,
        )
        assume = getattr(embedder, "assume_dimensions", None)
        if len(rows) == 1 and assume is not None:
            assume(int(rows[0]["dimensions"]))
            return embedder.key, int(rows[0]["id"])
        key = await embedder.probe()
    return key, await ensure_space(conn, key)
