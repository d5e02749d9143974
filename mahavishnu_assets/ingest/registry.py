"""Which repositories exist (settings and the database), where they live, and where their HEAD is now."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from mahavishnu_assets.errors import IngestError
from mahavishnu_assets.ingest.discover import check_configured_path, git_head
from mahavishnu_assets.settings import Settings


@dataclass(frozen=True)
class KnownRepository:
    name: str
    path: Path
    configured: bool  # named in settings (wins over the database's record)
    ingested_commit: str | None = None


async def known_repositories(
    conn: asyncpg.Connection | None, settings: Settings
) -> dict[str, KnownRepository]:
    """Repositories from settings.ingest.repositories and the repositories table, by name."""
    out: dict[str, KnownRepository] = {}
    if conn is not None:
        for row in await conn.fetch(
            "SELECT name, root_path, head_commit FROM mahavishnu.repositories ORDER BY name"
        ):
            out[row["name"]] = KnownRepository(row["name"], Path(row["root_path"]), False, row["head_commit"])
    for repo in settings.ingest.repositories:
        check_configured_path(repo.path)
        stored = out.get(repo.name)
        out[repo.name] = KnownRepository(
            repo.name, repo.path, True, stored.ingested_commit if stored else None
        )
    return out


async def repository_path(conn: asyncpg.Connection, settings: Settings, name: str) -> tuple[Path, bool]:
    """Where repository `name` lives, and whether settings name it (so it may move there)."""
    repos = await known_repositories(conn, settings)
    repo = repos.get(name)
    if repo is None:
        raise IngestError(
            f"Repository {name!r} is neither in settings.ingest.repositories nor ingested yet",
            suggestion="Add it to settings (ingest.repositories) or run `mahavishnu ingest PATH --name NAME`.",
        )
    return repo.path, repo.configured


async def current_head(path: Path) -> str | None:
    """The folder's git HEAD now, or None (not a git work tree, or missing)."""
    if not path.is_dir():
        return None
    return await asyncio.to_thread(git_head, path)
