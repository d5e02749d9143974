"""The schema asset and its check, materialized by Dagster on a real database.

Dagster runs its own event loop, so these tests are synchronous.
"""

from __future__ import annotations

import asyncio

import pytest
from dagster import materialize

from mahavishnu_assets.database.pool import connect
from mahavishnu_assets.database.target import ConnectTarget
from mahavishnu_assets.defs.resources import PostgresResource
from mahavishnu_assets.defs.schema import pgvector_schema, schema_matches_migrations


def test_definitions_load() -> None:
    from mahavishnu_assets.definitions import defs

    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert "pgvector_schema" in keys


def test_materialize_schema_on_empty_database(
    empty_database: ConnectTarget, settings_dir, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAHAVISHNU_DATABASE_URL", empty_database.libpq_url().get_secret_value())
    result = materialize(
        [pgvector_schema, schema_matches_migrations], resources={"postgres": PostgresResource()}
    )
    assert result.success
    meta = result.asset_materializations_for_node("pgvector_schema")[0].metadata
    assert meta["schema_version"].value >= 3
    assert meta["pgvector_version"].value.startswith("0.8")
    checks = result.get_asset_check_evaluations()
    assert [c.passed for c in checks] == [True]


def test_schema_check_fails_on_drift(
    database: ConnectTarget, settings_dir, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAHAVISHNU_DATABASE_URL", database.libpq_url().get_secret_value())

    async def drop_an_index() -> None:
        conn = await connect(database)
        await conn.execute("DROP INDEX mahavishnu.chunks_content_hash_idx")
        await conn.close()

    asyncio.run(drop_an_index())
    result = materialize(
        [pgvector_schema, schema_matches_migrations],
        resources={"postgres": PostgresResource()},
        raise_on_error=False,
    )
    checks = result.get_asset_check_evaluations()
    assert [c.passed for c in checks] == [False]
