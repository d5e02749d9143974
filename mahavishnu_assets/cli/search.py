"""`mahavishnu search` (vector, text, hybrid or symbol, with filters) and `mahavishnu index` (build or re-tune)."""

from __future__ import annotations

import argparse
from typing import Any

from mahavishnu_assets.cli.output import SubParsers, subcommand
from mahavishnu_assets.errors import AnnIndexError


async def search(args: argparse.Namespace) -> dict[str, Any]:
    # Imported here: `mahavishnu --help` and the other commands never pay for the search machinery.
    from mahavishnu_assets.api import open_memory

    # The same operation as the MCP server's search_code; an unknown --repo gives no results and a notice.
    async with open_memory() as memory:
        return await memory.search(
            args.query,
            repo=args.repo,
            path_prefix=args.path_prefix,
            language=args.language,
            mode=args.mode,
            k=args.k,
            exact=args.exact,
            missing_repo="empty",
        )


def render_search(result: dict[str, Any]) -> str:
    lines = [f"note: {n}" for n in result["notices"]]
    how = result["method"] if result["mode"] not in ("text", "symbol") else result["mode"]
    params = ", ".join(f"{k}={v}" for k, v in result["search_params"].items())
    lines.append(
        f"{len(result['results'])} results ({result['mode']}, {how}{', ' + params if params else ''})"
    )
    for i, hit in enumerate(result["results"], 1):
        where = f"{hit['repo']}:{hit['path']}:{hit['start_line']}-{hit['end_line']}"
        symbol = f"  {hit['symbol']}" if hit.get("symbol") else ""
        kind = f" ({hit['kind']})" if hit.get("kind") else ""
        lines.append(f"{i:>2}. {hit['score']:.4f}  {where}{symbol}{kind}")
        for text in hit["content"].splitlines()[:3]:
            lines.append(f"      {text[:120]}")
    return "\n".join(lines)


async def index(args: argparse.Namespace) -> dict[str, Any]:
    from mahavishnu_assets.cli.context import opened
    from mahavishnu_assets.errors import SearchError
    from mahavishnu_assets.index.maintenance import refresh_space
    from mahavishnu_assets.index.registry import spaces
    from mahavishnu_assets.ingest.embed import make_embedder
    from mahavishnu_assets.search.service import find_space

    if args.target_recall is not None and not 0 < args.target_recall <= 1:
        raise AnnIndexError(
            f"--target-recall must be in (0, 1], got {args.target_recall}", suggestion="Use e.g. 0.95."
        )
    async with opened() as (settings, db):
        async with db.connection() as conn:
            found = [s for s in await spaces(conn) if s.rows > 0]
            if not found:
                raise AnnIndexError(
                    "Nothing to index: no embeddings yet",
                    suggestion="Ingest a repository first: `mahavishnu ingest PATH`.",
                )
            active_id = None
            if not args.all:
                embedder = make_embedder(settings)
                try:
                    active_id, _ = await find_space(conn, embedder)
                except SearchError:
                    active_id = None  # the active embedder has no vectors: index what there is
                finally:
                    await embedder.aclose()
        chosen = [s for s in found if s.id == active_id] or found
        reports = [
            await refresh_space(db, settings, s, force=args.rebuild, target_recall=args.target_recall)
            for s in chosen
        ]
    main = next((r for r in reports if r["space_id"] == active_id), max(reports, key=lambda r: r["rows"]))
    return {**main, "spaces": reports if len(reports) > 1 else []}


def render_index(result: dict[str, Any]) -> str:
    params = ", ".join(f"{k}={v}" for k, v in result["params"].items()) or "none"
    search = ", ".join(f"{k}={v}" for k, v in result["search_params"].items()) or "none"
    lines = [f"note: {n}" for n in result.get("notices", [])]
    lines += [
        f"space {result['space']}: {result['method']} ({params}) over {result['rows']} rows",
        f"reason: {result['reason']}",
    ]
    if result["method"] != "exact":
        lines.append(
            f"recall@10 {result['recall_at_10']} (target {result['target_recall']}) with {search}; "
            f"{result['ann_qps']} QPS vs {result['exact_qps']} exact ({result.get('speedup')}x)"
        )
        if result.get("heldout_recall_at_10") is not None:
            lines.append(
                f"held-out recall@10 {result['heldout_recall_at_10']} on {result['heldout_queries']} "
                "queries the tuner did not see"
            )
        if result["built"]:
            lines.append(
                f"built in {result['build_seconds']}s with maintenance_work_mem={result['maintenance_work_mem']}"
            )
    return "\n".join(lines)


async def index_status(settings: Any, db: Any) -> dict[str, Any]:
    """`mahavishnu status`: every space's ANN index with its measured recall and speed."""
    from mahavishnu_assets.index.maintenance import status_extension

    return await status_extension(settings, db)


def register(sub: SubParsers) -> None:
    p = subcommand(sub, "index", index, "build or re-tune the ANN index", render=render_index)
    p.add_argument(
        "--target-recall",
        type=float,
        default=None,
        help="tune to this recall@10 now (persistently: MAHAVISHNU_INDEX__TARGET_RECALL)",
    )
    p.add_argument("--rebuild", action="store_true", help="rebuild even if the index is current")
    p.add_argument("--all", action="store_true", help="every embedding space, not only the active embedder's")
    p = subcommand(sub, "search", search, "search the ingested repositories", render=render_search)
    p.add_argument("query", help="what to look for: words, an identifier, a question")
    p.add_argument("--repo", default=None, help="only this repository (by name)")
    p.add_argument("--path-prefix", default=None, help="only paths starting with this (taken literally)")
    p.add_argument("--language", default=None, help="only this language (e.g. python)")
    p.add_argument("--k", type=int, default=10, help="number of results (default 10)")
    p.add_argument(
        "--mode",
        choices=["vector", "text", "hybrid", "symbol"],
        default="hybrid",
        help="default: hybrid; symbol: look a definition up by name or qualified name (exact, then prefix)",
    )
    p.add_argument("--exact", action="store_true", help="bypass the ANN index (exact vector search)")
