"""Resolve settings into a running server: the embedded one by default, an external one when configured."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg

from mahavishnu_assets.database.pool import Database, PoolConfig, connect
from mahavishnu_assets.database.target import ConnectTarget, target_from_url
from mahavishnu_assets.errors import DatabaseMissingError
from mahavishnu_assets.settings import Settings

if TYPE_CHECKING:
    from mahavishnu_assets.database.embedded import EmbeddedServer


def home_path(settings: Settings) -> Path:
    return settings.home.expanduser().resolve()


def embedded_server(settings: Settings) -> EmbeddedServer:
    # platformdirs warns about XDG_RUNTIME_DIR when the wheel is imported; it says nothing useful here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from mahavishnu_assets.database.embedded import EmbeddedOptions, EmbeddedServer

    e = settings.embedded
    return EmbeddedServer(
        home_path(settings),
        EmbeddedOptions(
            max_connections=e.max_connections,
            shared_buffers=e.shared_buffers,
            maintenance_work_mem=e.maintenance_work_mem,
            start_timeout_seconds=e.start_timeout_seconds,
        ),
    )


def resolve_target(settings: Settings, *, start: bool = True) -> ConnectTarget:
    """Where to connect; starts (or reuses) the embedded server when nothing external is configured."""
    if settings.database_url is not None:
        return target_from_url(settings.database_url)
    pg = settings.postgres
    if pg.host is not None:
        return ConnectTarget(
            host=pg.host,
            port=pg.port,
            database=pg.database,
            user=pg.user,
            password=pg.password,
            kind="external",
        )
    server = embedded_server(settings)
    target = server.start() if start else server.target()
    return target.with_database(pg.database)


async def ensure_database(target: ConnectTarget) -> None:
    """Create the embedded server's database on first use; an external database must already exist."""
    if target.kind != "embedded":
        return
    conn = await connect(target.with_database("postgres"))
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", target.database)
        if not exists:
            try:
                # CREATE DATABASE takes no parameters; the name is quoted as an identifier.
                await conn.execute(f'CREATE DATABASE "{target.database.replace(chr(34), "")}"')
            except asyncpg.exceptions.DuplicateDatabaseError:
                pass  # another process won the race
    finally:
        await conn.close()


def pool_config(settings: Settings, **overrides: object) -> PoolConfig:
    pg = settings.postgres
    values: dict[str, object] = {
        "min_size": pg.pool_min_size,
        "max_size": pg.pool_max_size,
        "connect_timeout": pg.connect_timeout_seconds,
        "command_timeout": pg.command_timeout_seconds,
        "acquire_timeout": pg.acquire_timeout_seconds,
        "health_interval": pg.health_check_interval_seconds,
        "application_name": pg.application_name,
    }
    values.update(overrides)
    return PoolConfig(**values)  # type: ignore[arg-type]


async def open_database(settings: Settings, *, migrate: bool = True, **pool_overrides: object) -> Database:
    """Start or reach the server, apply pending migrations, open the pool."""
    import asyncio

    from mahavishnu_assets.database.migrations import migrate_up

    target = await asyncio.to_thread(resolve_target, settings)
    config = pool_config(settings, **pool_overrides)
    if not migrate:
        await ensure_database(target)
        return await Database(target, config).open()
    # The pool's first connection checks the migrations too: connecting is most of a quick command. Before the
    # first migration there is no vector type to register; the pool's connections are renewed once it exists.
    db = await _open_creating(target, config)
    try:
        async with db.connection() as conn:
            report = await migrate_up(target, conn=conn)
        if report.applied:
            await db.refresh_codecs()
    except BaseException:
        await db.close()
        raise
    return db


async def _open_creating(target: ConnectTarget, config: PoolConfig) -> Database:
    """The pool on the target database; the embedded server's database is created when missing."""
    if config.min_size == 0:
        # An empty pool connects at its first acquire, past the point where a missing database is handled.
        await ensure_database(target)
    try:
        return await Database(target, config).open()
    except DatabaseMissingError:
        if target.kind != "embedded":
            raise
    await ensure_database(target)
    return await Database(target, config).open()
