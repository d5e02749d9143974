"""Shared fixtures: a real PostgreSQL with pgvector for every database test.

With MAHAVISHNU_TEST_DATABASE_URL set, that server is used as is (each test gets its own database on it);
otherwise one embedded server is started for the session. Each test that asks for `database` gets a fresh,
fully migrated database cloned from a template, so tests never see each other's rows.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from pydantic import SecretStr

from mahavishnu_assets.database.migrations import migrate_up
from mahavishnu_assets.database.pool import Database, PoolConfig, connect
from mahavishnu_assets.database.target import ConnectTarget, target_from_url
from mahavishnu_assets.settings import Settings

TEMPLATE = "mahavishnu_test_template"


@pytest.fixture(scope="session")
def pg_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mhome")


@pytest.fixture(scope="session")
def server_target(pg_home: Path) -> Iterator[ConnectTarget]:
    """An admin connection target on a real server (its `postgres` database)."""
    url = os.environ.get("MAHAVISHNU_TEST_DATABASE_URL")
    if url:
        yield target_from_url(SecretStr(url)).with_database("postgres")
        return
    from mahavishnu_assets.database.server import embedded_server

    server = embedded_server(Settings(home=pg_home))
    target = server.start()
    yield target.with_database("postgres")
    server.stop(mode="immediate")


async def _create_database(admin: ConnectTarget, name: str, template: str | None = None) -> None:
    conn = await connect(admin)
    try:
        clause = f' TEMPLATE "{template}"' if template else ""
        await conn.execute(f'CREATE DATABASE "{name}"{clause}')
    finally:
        await conn.close()


async def drop_database(admin: ConnectTarget, name: str) -> None:
    conn = await connect(admin)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(scope="session")
async def template_database(server_target: ConnectTarget) -> AsyncIterator[str]:
    await drop_database(server_target, TEMPLATE)
    await _create_database(server_target, TEMPLATE)
    await migrate_up(server_target.with_database(TEMPLATE))
    yield TEMPLATE
    await drop_database(server_target, TEMPLATE)


@pytest.fixture
async def empty_database(server_target: ConnectTarget) -> AsyncIterator[ConnectTarget]:
    """A fresh database with no migrations applied."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    await _create_database(server_target, name)
    yield server_target.with_database(name)
    await drop_database(server_target, name)


@pytest.fixture
async def database(server_target: ConnectTarget, template_database: str) -> AsyncIterator[ConnectTarget]:
    """A fresh, fully migrated database."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    for attempt in range(5):
        try:
            await _create_database(server_target, name, template_database)
            break
        except asyncpg.exceptions.ObjectInUseError:
            # The template is briefly busy when another process touched it; try again.
            import asyncio

            await asyncio.sleep(0.2 * (attempt + 1))
    else:
        raise RuntimeError("template database stayed busy")
    yield server_target.with_database(name)
    await drop_database(server_target, name)


@pytest.fixture
async def db(database: ConnectTarget) -> AsyncIterator[Database]:
    """An open pool on a fresh, migrated database."""
    pool = await Database(database, PoolConfig(min_size=1, max_size=5)).open()
    yield pool
    await pool.close()


@pytest.fixture
def settings_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty settings folder so the repository's own YAML and the caller's environment do not leak in."""
    folder = tmp_path / "settings"
    folder.mkdir()
    monkeypatch.setenv("MAHAVISHNU_SETTINGS_DIR", str(folder))
    for key in list(os.environ):
        if key.startswith("MAHAVISHNU_") and key not in (
            "MAHAVISHNU_SETTINGS_DIR",
            "MAHAVISHNU_TEST_DATABASE_URL",
        ):
            monkeypatch.delenv(key)
    return folder


@pytest.fixture
def test_settings(database: ConnectTarget, settings_dir: Path, tmp_path: Path) -> Settings:
    """Settings pointing at the test's own database (as an external URL) and a private home."""
    return Settings(home=tmp_path / "home", database_url=database.libpq_url(), embedder="local")
