"""The ann_index asset, its blocking checks and the drift sensor, run by Dagster on a real database.

Dagster runs its own event loop, so these tests are synchronous and set up data with asyncio.run.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from dagster import AssetSelection, DagsterInstance, RunRequest, build_sensor_context, materialize

from mahavishnu_assets.database.pool import connect
from mahavishnu_assets.database.target import ConnectTarget
from mahavishnu_assets.defs.index import (
    INDEX_PRESENT_AND_VALID,
    RECALL_MEETS_TARGET,
    ann_index,
    ann_index_drift_sensor,
    ann_index_present_and_valid,
    ann_recall_meets_target,
)
from mahavishnu_assets.defs.resources import OllamaResource, PostgresResource
from mahavishnu_assets.index.synthetic import synthetic_corpus

ASSETS = [ann_index, ann_recall_meets_target, ann_index_present_and_valid]
RESOURCES = {"postgres": PostgresResource(), "ollama": OllamaResource()}


@pytest.fixture
def index_env(database: ConnectTarget, settings_dir: Path, monkeypatch: pytest.MonkeyPatch) -> ConnectTarget:
    monkeypatch.setenv("MAHAVISHNU_DATABASE_URL", database.libpq_url().get_secret_value())
    monkeypatch.setenv("MAHAVISHNU_INDEX__MIN_ROWS_FOR_INDEX", "1000")
    monkeypatch.setenv("MAHAVISHNU_INDEX__RECALL_SAMPLE_QUERIES", "20")
    return database


def load(target: ConnectTarget, count: int = 1500) -> int:
    async def go() -> int:
        conn = await connect(target)
        try:
            space_id, _, _ = await synthetic_corpus(conn, count=count, dimensions=32)
            return space_id
        finally:
            await conn.close()

    return asyncio.run(go())


def sql(target: ConnectTarget, statement: str) -> object:
    async def go() -> object:
        conn = await connect(target)
        try:
            return await conn.fetchval(statement)
        finally:
            await conn.close()

    return asyncio.run(go())


def checks(result: object) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}  # type: ignore[attr-defined]


def test_asset_builds_measures_and_passes_its_checks(index_env: ConnectTarget) -> None:
    space_id = load(index_env)
    result = materialize(ASSETS, resources=RESOURCES)
    assert result.success
    meta = result.asset_materializations_for_node("ann_index")[0].metadata
    assert meta["method"].value == "ivfflat" and meta["lists"].value == 1
    assert meta["recall_at_10"].value >= 0.95
    assert meta["ivfflat.probes"].value >= 1
    for key in (
        "ann_qps",
        "exact_qps",
        "ann_p50_ms",
        "ann_p99_ms",
        "exact_p50_ms",
        "exact_p99_ms",
        "build_seconds",
    ):
        assert meta[key].value > 0, key
    assert meta[f"space_{space_id}/recall_at_10"].value == meta["recall_at_10"].value
    assert checks(result) == {RECALL_MEETS_TARGET: True, INDEX_PRESENT_AND_VALID: True}


def test_empty_database_is_fine(index_env: ConnectTarget) -> None:
    result = materialize(ASSETS, resources=RESOURCES)
    assert result.success
    assert result.asset_materializations_for_node("ann_index")[0].metadata["spaces"].value == 0
    assert all(checks(result).values())


def test_recall_below_target_fails_the_blocking_check(
    index_env: ConnectTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mahavishnu_assets.index import measure

    load(index_env)
    monkeypatch.setenv("MAHAVISHNU_INDEX__LISTS_RULE", "sqrt")  # 39 lists for 1,500 rows
    monkeypatch.setenv("MAHAVISHNU_INDEX__TARGET_RECALL", "0.99")
    monkeypatch.setattr(measure, "candidates", lambda method, params: [1])  # tuning may not go past probes=1
    result = materialize(ASSETS, resources=RESOURCES, raise_on_error=False)
    assert checks(result) == {RECALL_MEETS_TARGET: False, INDEX_PRESENT_AND_VALID: True}
    assert not result.success  # blocking: the run fails with it


def test_missing_or_invalid_index_fails_the_blocking_check(index_env: ConnectTarget) -> None:
    load(index_env)
    assert materialize(ASSETS, resources=RESOURCES).success
    name = sql(index_env, "SELECT index_name FROM mahavishnu.vector_indexes")
    sql(index_env, f"DROP INDEX mahavishnu.{name}")
    only_checks = AssetSelection.checks_for_assets(ann_index)
    result = materialize(ASSETS, resources=RESOURCES, selection=only_checks, raise_on_error=False)
    assert checks(result)[INDEX_PRESENT_AND_VALID] is False
    # A leftover INVALID index fails it too, even with a valid one in place.
    assert materialize(ASSETS, resources=RESOURCES).success
    sql(
        index_env,
        "UPDATE pg_index SET indisvalid = false WHERE indexrelid = "
        "(SELECT oid FROM pg_class WHERE relname = (SELECT index_name FROM mahavishnu.vector_indexes))",
    )
    result = materialize(ASSETS, resources=RESOURCES, selection=only_checks, raise_on_error=False)
    assert checks(result)[INDEX_PRESENT_AND_VALID] is False


def test_drift_sensor_requests_a_run_only_when_needed(index_env: ConnectTarget) -> None:
    instance = DagsterInstance.ephemeral()
    skip = ann_index_drift_sensor(build_sensor_context(instance=instance))
    assert not isinstance(skip, RunRequest)  # no data yet
    load(index_env)
    first = ann_index_drift_sensor(build_sensor_context(instance=instance))
    assert isinstance(first, RunRequest) and first.run_key and "@g0" in first.run_key
    again = ann_index_drift_sensor(build_sensor_context(instance=instance))
    assert isinstance(again, RunRequest) and again.run_key == first.run_key  # deterministic: Dagster dedups
    assert materialize(ASSETS, resources=RESOURCES).success
    assert not isinstance(ann_index_drift_sensor(build_sensor_context(instance=instance)), RunRequest)


def test_asset_reports_held_out_recall_and_the_check_uses_it(
    index_env: ConnectTarget, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil
    import sysconfig

    from mahavishnu_assets.database.pool import Database, PoolConfig
    from mahavishnu_assets.ingest.pipeline import ingest_repository
    from mahavishnu_assets.settings import load_settings

    monkeypatch.setenv("MAHAVISHNU_EMBEDDER", "local")
    monkeypatch.setenv("MAHAVISHNU_INDEX__MIN_ROWS_FOR_INDEX", "100")
    corpus = tmp_path / "corpus"
    for name in ("json", "email"):
        stdlib = Path(sysconfig.get_paths()["stdlib"]) / name
        shutil.copytree(stdlib, corpus / name, ignore=shutil.ignore_patterns("test*", "__pycache__"))

    async def ingest() -> None:
        db = await Database(index_env, PoolConfig(min_size=1, max_size=4)).open()
        try:
            await ingest_repository(db, load_settings(home=tmp_path / "home"), corpus, name="stdlib")
        finally:
            await db.close()

    asyncio.run(ingest())
    result = materialize(ASSETS, resources=RESOURCES)
    assert result.success
    meta = result.asset_materializations_for_node("ann_index")[0].metadata
    assert meta["recall_queries"].value == "text"
    assert 0 < meta["heldout_recall_at_10"].value <= 1 and meta["heldout_queries"].value == 20
    assert checks(result)[RECALL_MEETS_TARGET] is True
    # Held-out queries falling short of the target fail the blocking check, whatever the tuner's figure.
    sql(index_env, "UPDATE mahavishnu.vector_indexes SET heldout_recall_at_10 = 0.9, recall_at_10 = 0.99")
    only_checks = AssetSelection.checks_for_assets(ann_index)
    result = materialize(ASSETS, resources=RESOURCES, selection=only_checks, raise_on_error=False)
    assert checks(result)[RECALL_MEETS_TARGET] is False
