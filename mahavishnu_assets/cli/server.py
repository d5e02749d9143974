"""`mahavishnu up`, `down` and `status`."""

from __future__ import annotations

import argparse
from typing import Any

from mahavishnu_assets.cli.output import SubParsers, subcommand

# The database machinery (pydantic, asyncpg) is imported inside each command: starting the `mahavishnu`
# process stays light, and a command can start slow outside work (git) before paying for it.


async def up(args: argparse.Namespace) -> dict[str, Any]:
    from mahavishnu_assets.cli.context import opened
    from mahavishnu_assets.database.migrations import schema_version

    async with opened() as (_, db):
        async with db.connection() as conn:
            return {
                "database": db.target.kind,
                "target": db.target.describe(),
                "postgres_version": await conn.fetchval("SHOW server_version"),
                "pgvector_version": await conn.fetchval(
                    "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
                ),
                "schema_version": await schema_version(conn),
            }


async def down(args: argparse.Namespace) -> dict[str, Any]:
    import asyncio

    from mahavishnu_assets.database.server import embedded_server
    from mahavishnu_assets.settings import load_settings

    settings = load_settings()
    if not settings.uses_embedded_server:
        return {"database": "external", "stopped": False, "message": "an external server is never stopped"}
    server = embedded_server(settings)
    stopped = await asyncio.to_thread(server.stop)
    return {"database": "embedded", "stopped": stopped}


async def status(args: argparse.Namespace) -> dict[str, Any]:
    from mahavishnu_assets.cli.context import opened
    from mahavishnu_assets.cli.ingest import embedding_status, ingest_status
    from mahavishnu_assets.cli.memory import pool_status
    from mahavishnu_assets.cli.search import index_status
    from mahavishnu_assets.database.migrations import schema_version

    async with opened() as (settings, db):
        health = await db.health_check()
        async with db.connection() as conn:
            version = await schema_version(conn)
        result: dict[str, Any] = {
            "healthy": health.healthy,
            "database": db.target.kind,
            "target": db.target.describe(),
            "schema_version": version,
            "pool": db.stats().to_dict(),
            "recommendations": [],
        }
        # The other domains' figures: repositories and their last ingests, the embedding servers, index recall,
        # pool advice.
        for domain_status in (ingest_status, embedding_status, index_status, pool_status):
            result.update(await domain_status(settings, db))
        return result


def register(sub: SubParsers) -> None:
    subcommand(sub, "up", up, "start the embedded server if needed and apply pending migrations")
    subcommand(sub, "down", down, "stop the embedded server")
    subcommand(sub, "status", status, "pool health, statistics and recommendations")
