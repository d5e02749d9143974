"""Dagster resources: the PostgreSQL pool, opened on the step's own event loop and closed after it."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from dagster import ConfigurableResource, InitResourceContext
from pydantic import PrivateAttr

from mahavishnu_assets import telemetry
from mahavishnu_assets.database.pool import Database
from mahavishnu_assets.database.server import open_database
from mahavishnu_assets.errors import DatabaseUnavailableError
from mahavishnu_assets.settings import Settings, load_settings

if TYPE_CHECKING:
    from mahavishnu_assets.ingest.embed import Embedder


class PostgresResource(ConfigurableResource):
    """An asyncpg pool on the configured server (embedded unless MAHAVISHNU_DATABASE_URL is set).

    The URL and password are read from the environment at run time, never stored in run config, so they do
    not reach the Dagster UI.
    """

    pool_max_size: int | None = None
    health_check: bool = True

    _db: Database | None = PrivateAttr(default=None)
    _settings: Settings | None = PrivateAttr(default=None)

    # Dagster accepts an async context manager here (it runs on the step's event loop); its stubs say sync.
    @asynccontextmanager
    async def yield_for_execution(  # type: ignore[override]
        self, context: InitResourceContext
    ) -> AsyncIterator["PostgresResource"]:
        settings = load_settings()
        telemetry.configure_from_environment()
        overrides: dict[str, Any] = {}
        if self.pool_max_size is not None:
            overrides["max_size"] = self.pool_max_size
            overrides["min_size"] = min(settings.postgres.pool_min_size, self.pool_max_size)
        # Pending migrations are the pgvector_schema asset's job; the pool only connects.
        db = await open_database(settings, migrate=False, **overrides)
        if self.health_check:
            report = await db.health_check()
            if not report.healthy:
                await db.close()
                raise DatabaseUnavailableError(f"Health check failed: {report.error}")
        self._db = db
        self._settings = settings
        try:
            yield self
        finally:
            self._db = None
            await db.close()

    @property
    def db(self) -> Database:
        if self._db is None:
            raise DatabaseUnavailableError(
                "The PostgreSQL resource is not open", suggestion="Use it inside an asset or op."
            )
        return self._db

    @property
    def settings(self) -> Settings:
        return self._settings or load_settings()


class OllamaResource(ConfigurableResource):
    """The embedder of the active space: Ollama through its official client, or the offline `local` one.

    Host, model and choice come from settings (OLLAMA_HOST, MAHAVISHNU_EMBED_MODEL, MAHAVISHNU_EMBEDDER) at
    run time unless set here; retries, timeouts and batching live in the embedder itself.
    """

    host: str | None = None
    model: str | None = None
    embedder_choice: str | None = None  # "ollama", "local" or "auto"

    def effective_settings(self, settings: Settings | None = None) -> Settings:
        """Settings (read now unless given) with this resource's overrides applied."""
        settings = settings or load_settings()
        updates: dict[str, Any] = {}
        if self.model:
            updates["embed_model"] = self.model
        if self.embedder_choice:
            updates["embedder"] = self.embedder_choice
        if self.host:
            # Several servers may be named, separated by commas; they replace any `ollama.hosts` list.
            updates["ollama"] = settings.ollama.model_copy(update={"host": self.host, "hosts": []})
        return settings.model_copy(update=updates) if updates else settings

    def embedder(self, settings: Settings | None = None) -> "Embedder":
        """A new embedder (close it with `await embedder.aclose()`)."""
        from mahavishnu_assets.ingest.embed import make_embedder

        return make_embedder(self.effective_settings(settings))
