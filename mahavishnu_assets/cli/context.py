"""Open what a command needs: settings, the server (started when embedded), migrations, the pool."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from mahavishnu_assets.database.pool import Database
from mahavishnu_assets.database.server import open_database
from mahavishnu_assets.settings import Settings, load_settings


@asynccontextmanager
async def opened(
    settings: Settings | None = None, **pool_overrides: object
) -> AsyncIterator[tuple[Settings, Database]]:
    settings = settings or load_settings()
    db = await open_database(settings, migrate=True, **pool_overrides)
    try:
        yield settings, db
    finally:
        await db.close()
