"""Search by query text: find the active embedder's space, embed the query there, then search.

The space searched is the one of the embedder the settings choose (`MAHAVISHNU_EMBEDDER`, the model): vectors
of other models are never compared with the query. Searching never creates a space.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import asyncpg

from mahavishnu_assets import telemetry
from mahavishnu_assets.database.pool import Database
from mahavishnu_assets.errors import SearchError
from mahavishnu_assets.index.query_log import record_query
from mahavishnu_assets.ingest.embed import Embedder, make_embedder, stored_spaces
from mahavishnu_assets.search.core import MODES, SearchResult, search
from mahavishnu_assets.search.filters import SearchFilters, check_k, clean_query
from mahavishnu_assets.settings import Settings

logger = logging.getLogger(__name__)


async def find_space(
    conn: asyncpg.Connection, embedder: Embedder, *, need_rows: bool = True
) -> tuple[int, int]:
    """(space id, dimensions) of the embedder's space; SearchError when it does not exist or is empty."""
    key = embedder.key
    # The model's prefixes too: vectors made with other prefixes are another space.
    rows = await stored_spaces(conn, key)
    if len(rows) > 1:
        # The same model at several sizes (it changed): ask it which size it gives now.
        key = await embedder.probe()
        rows = [r for r in rows if r[1] == key.dimensions]
    if not rows:
        raise SearchError(
            f"Nothing is embedded in the space {key.describe() if key.dimensions else f'{key.provider}:{key.model}'}",
            suggestion="Ingest a repository first (`mahavishnu ingest PATH`) with the same embedder settings "
            "(model and ollama.document_prefix / ollama.query_prefix), or search with --mode text.",
        )
    space_id, dims = rows[0]
    if need_rows and not await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM mahavishnu.embeddings WHERE space_id = $1)", space_id
    ):
        raise SearchError(
            f"The embedding space {key.provider}:{key.model}/{dims} holds no vectors",
            suggestion="Ingest a repository first (`mahavishnu ingest PATH`), or search with --mode text.",
        )
    assume = getattr(embedder, "assume_dimensions", None)
    if assume is not None and not embedder.key.dimensions:
        assume(dims)
    return space_id, dims


async def search_text(
    db: Database,
    settings: Settings,
    query: str,
    *,
    mode: str = "hybrid",
    k: int = 10,
    filters: SearchFilters | None = None,
    exact: bool = False,
    embedder: Embedder | None = None,
) -> dict[str, Any]:
    """The `mahavishnu search` operation: results plus how they were found."""
    started = time.perf_counter()
    if mode not in MODES:
        raise SearchError(
            f"Unknown search mode {mode!r}", suggestion="Use --mode vector, text, hybrid or symbol."
        )
    check_k(k)
    query = clean_query(query)
    if not query.strip():
        raise SearchError("The query is empty", suggestion="Pass the text to search for.")
    notices: list[str] = []
    vector = None
    space_id = None
    space = None
    if mode not in ("text", "symbol"):
        own = embedder is None
        embedder = embedder or make_embedder(settings)
        try:
            if embedder.announcement:
                notices.append(embedder.announcement)
            async with db.connection() as conn:
                space_id, dims = await find_space(conn, embedder)
            space = f"{embedder.key.provider}:{embedder.key.model}/{dims}"
            vector = await embedder.embed_query(query)
        finally:
            if own:
                await embedder.aclose()
    result: SearchResult = await search(
        db,
        mode=mode,
        text=query,
        vector=vector,
        space_id=space_id,
        k=k,
        filters=filters,
        exact=exact,
        fusion=settings.search,
    )
    # The ANN tuner measures recall on the queries users run (index.query_log=false: nothing is kept).
    await record_query(db, settings, space_id, mode, query)
    out = {"query": query, "k": k, "space": space, **result.to_dict()}
    out["notices"] = notices + out["notices"]
    telemetry.search_duration.record(time.perf_counter() - started, {"mode": mode})
    telemetry.search_results.record(len(out["results"]), {"mode": mode})
    return out
