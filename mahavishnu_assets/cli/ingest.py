"""`mahavishnu ingest PATH [--name NAME]`: incremental ingest of one repository (registers it)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mahavishnu_assets.cli.output import SubParsers, subcommand


async def ingest(args: argparse.Namespace) -> dict[str, Any]:
    # Imported here: `mahavishnu --help` and the other commands never pay for the ingest machinery.
    from mahavishnu_assets.cli.context import opened
    from mahavishnu_assets.ingest.pipeline import ingest_repository
    from mahavishnu_assets.ingest.progress import ProgressBar, Throttled

    async with opened() as (settings, db):
        bar = ProgressBar(sys.stderr) if sys.stderr.isatty() and not args.no_progress else None
        try:
            result = await ingest_repository(
                db,
                settings,
                args.path,
                name=args.name,
                progress=Throttled(bar, interval=0.2) if bar else None,
            )
        finally:
            if bar is not None:
                bar.close()
    return result.to_dict()


def render(result: dict[str, Any]) -> str:
    skipped = ", ".join(f"{k} {v}" for k, v in result["skipped"].items()) or "none"
    lines = [f"warning: {w}" for w in result.get("warnings", [])]
    lines += [
        f"{result['repo']} @ {(result['commit'] or 'no commit')[:12]} ({result['root_path']})",
        f"files: {result['files_seen']} seen, {result['files_changed']} changed, "
        f"{result['files_deleted']} deleted, {result['files_skipped']} skipped ({skipped})",
        f"chunks: {result['chunks_written']} written, {result['chunks_deleted']} deleted",
        f"embeddings: {result['embeddings_computed']} computed, {result['embeddings_reused']} reused "
        f"({result['embedding_space']})",
        f"took {result['seconds']:.2f}s",
    ]
    return "\n".join(lines)


async def embedding_status(settings: Any, db: Any) -> dict[str, Any]:
    """The embedder chosen and, unless it is an offline one, whether each Ollama server answers (merged into
    `mahavishnu status`)."""
    import asyncio

    from mahavishnu_assets.ingest.servers import reachability

    urls = settings.ollama.urls if settings.embedder in ("ollama", "auto") else []
    answers = await asyncio.to_thread(reachability, urls)
    servers = [{"url": url, "reachable": why is None, "reason": why} for url, why in answers.items()]
    return {"embedding": {"embedder": settings.embedder, "model": settings.embed_model, "servers": servers}}


async def ingest_status(settings: Any, db: Any) -> dict[str, Any]:
    """Per repository: last ingest, its outcome, files and chunks (merged into `mahavishnu status`)."""
    async with db.connection() as conn:
        exists = await conn.fetchval("SELECT to_regclass('mahavishnu.ingest_runs') IS NOT NULL")
        if not exists:
            return {}
        rows = await conn.fetch(
            """SELECT r.name, r.root_path, r.head_commit, r.last_ingested_at,
                      (SELECT count(*) FROM mahavishnu.source_files f WHERE f.repo_id = r.id) AS files,
                      (SELECT count(*) FROM mahavishnu.chunks c WHERE c.repo_id = r.id) AS chunks,
                      (SELECT status FROM mahavishnu.ingest_runs i WHERE i.repo_id = r.id
                       ORDER BY i.id DESC LIMIT 1) AS last_run
               FROM mahavishnu.repositories r ORDER BY r.name"""
        )
    repos = [
        {
            "name": r["name"],
            "path": r["root_path"],
            "commit": r["head_commit"],
            "last_ingested_at": r["last_ingested_at"].isoformat() if r["last_ingested_at"] else None,
            "files": r["files"],
            "chunks": r["chunks"],
            "last_run": r["last_run"],
        }
        for r in rows
    ]
    advice = [
        f"The last ingest of {r['name']} was {r['last_run']}: run `mahavishnu ingest {r['path']} --name {r['name']}`."
        for r in repos
        if r["last_run"] in ("failed", "abandoned")
    ]
    return {"repositories": repos, "ingest_recommendations": advice}


def register(sub: SubParsers) -> None:
    parser = subcommand(
        sub,
        "ingest",
        ingest,
        "incremental ingest of one repository (registers it)",
        render=render,
    )
    parser.add_argument("path", help="the repository's folder (a git work tree or a plain folder)")
    parser.add_argument("--name", help="the repository's name (default: the folder's name)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on a terminal")
