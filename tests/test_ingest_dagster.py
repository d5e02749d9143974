"""Ingestion through Dagster: partitioned assets and checks via `materialize`, sensor and schedule against an
ephemeral instance. Dagster runs its own event loop, so these tests are synchronous."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import yaml
from dagster import (
    AssetSelection,
    DagsterInstance,
    build_schedule_context,
    build_sensor_context,
    instance_for_test,
    materialize,
)

from mahavishnu_assets.database.pool import connect
from mahavishnu_assets.database.target import ConnectTarget
from mahavishnu_assets.defs.ingestion import (
    CHUNKS_HAVE_EMBEDDINGS,
    LINE_RANGES_VALID,
    NO_ORPHANS,
    PARTITIONS_NAME,
    chunks_have_embeddings,
    embedded_chunks,
    line_ranges_valid,
    nightly_reingest,
    no_orphans,
    repository_head_sensor,
    repository_ingestion,
)
from mahavishnu_assets.defs.resources import OllamaResource, PostgresResource
from mahavishnu_assets.defs.schema import pgvector_schema
from mahavishnu_assets.testing.ollama_stub import OllamaStub
from tests.ingest_helpers import commit_all, git, make_repo, python_module, write_files

ASSETS = [
    pgvector_schema,
    repository_ingestion,
    embedded_chunks,
    chunks_have_embeddings,
    no_orphans,
    line_ranges_valid,
]


@pytest.fixture
def dagster_env(database: ConnectTarget, settings_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MAHAVISHNU_DATABASE_URL", database.libpq_url().get_secret_value())
    monkeypatch.setenv("MAHAVISHNU_HOME", str(tmp_path / "home"))
    repo = make_repo(
        tmp_path / "proj", {"a.py": python_module("a"), "docs/guide.md": "# Guide\n\nRead me.\n"}
    )
    (settings_dir / "local.yaml").write_text(
        yaml.safe_dump({"ingest": {"repositories": [{"name": "proj", "path": str(repo)}]}})
    )
    with OllamaStub(dimensions=16) as stub:
        monkeypatch.setenv("OLLAMA_HOST", stub.url)
        monkeypatch.setenv("MAHAVISHNU_EMBEDDER", "ollama")
        monkeypatch.setenv("MAHAVISHNU_OLLAMA__RETRY_BACKOFF_SECONDS", "0.01")
        yield repo, stub, database


def _resources() -> dict[str, object]:
    return {"postgres": PostgresResource(), "ollama": OllamaResource()}


def _query(target: ConnectTarget, sql: str):
    async def run():
        conn = await connect(target)
        try:
            return await conn.fetch(sql)
        finally:
            await conn.close()

    return asyncio.run(run())


def test_materialize_partition_ingests_and_checks_pass(dagster_env) -> None:
    repo, stub, database = dagster_env
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(PARTITIONS_NAME, ["proj"])
    result = materialize(ASSETS, resources=_resources(), instance=instance, partition_key="proj")
    assert result.success
    meta = result.asset_materializations_for_node("repository_ingestion")[0].metadata
    assert meta["files_changed"].value == 2
    assert meta["chunks_written"].value >= 2
    assert meta["embeddings_computed"].value >= 2
    assert meta["embedding_space"].value == "ollama:nomic-embed-text/16"
    assert meta["commit"].value == git(repo, "rev-parse", "HEAD")
    embedded = result.asset_materializations_for_node("embedded_chunks")[0].metadata
    assert embedded["embeddings_computed"].value == 0  # the ingest already embedded everything
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {CHUNKS_HAVE_EMBEDDINGS: True, NO_ORPHANS: True, LINE_RANGES_VALID: True}


def test_model_change_is_backfilled_by_embedded_chunks(dagster_env, monkeypatch: pytest.MonkeyPatch) -> None:
    repo, stub, database = dagster_env
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(PARTITIONS_NAME, ["proj"])
    assert materialize(ASSETS, resources=_resources(), instance=instance, partition_key="proj").success
    chunks = _query(database, "SELECT count(DISTINCT content_hash) AS n FROM mahavishnu.chunks")[0]["n"]

    # A new model: the check on the new space fails until embedded_chunks backfills it.
    monkeypatch.setenv("MAHAVISHNU_EMBED_MODEL", "other-model")
    only_check = materialize(
        [embedded_chunks, chunks_have_embeddings],
        resources=_resources(),
        instance=instance,
        selection=AssetSelection.checks(chunks_have_embeddings),
        raise_on_error=False,
    )
    assert [c.passed for c in only_check.get_asset_check_evaluations()] == [False]
    backfill = materialize(
        [embedded_chunks, chunks_have_embeddings],
        resources=_resources(),
        instance=instance,
        partition_key="proj",
    )
    meta = backfill.asset_materializations_for_node("embedded_chunks")[0].metadata
    assert meta["embeddings_computed"].value == chunks
    assert meta["embedding_space"].value == "ollama:other-model/16"
    assert [c.passed for c in backfill.get_asset_check_evaluations()] == [True]
    spaces = _query(database, "SELECT count(*) AS n FROM mahavishnu.embedding_spaces")[0]["n"]
    assert spaces == 2


def test_checks_detect_broken_rows(dagster_env) -> None:
    repo, stub, database = dagster_env
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(PARTITIONS_NAME, ["proj"])
    assert materialize(ASSETS, resources=_resources(), instance=instance, partition_key="proj").success

    async def damage() -> None:
        conn = await connect(database)
        try:
            await conn.execute(
                "UPDATE mahavishnu.chunks SET end_line = end_line + 1000 WHERE chunk_index = 0"
            )
            await conn.execute("DELETE FROM mahavishnu.embeddings")
            await conn.execute(
                """INSERT INTO mahavishnu.skipped_files (repo_id, path, reason, size_bytes)
                   SELECT repo_id, path, 'binary', 1 FROM mahavishnu.source_files LIMIT 1"""
            )
        finally:
            await conn.close()

    asyncio.run(damage())
    # A checks-only run (no partition) checks every repository.
    result = materialize(
        [repository_ingestion, embedded_chunks, chunks_have_embeddings, no_orphans, line_ranges_valid],
        resources=_resources(),
        instance=instance,
        selection=AssetSelection.checks(chunks_have_embeddings, no_orphans, line_ranges_valid),
        raise_on_error=False,
    )
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {CHUNKS_HAVE_EMBEDDINGS: False, NO_ORPHANS: False, LINE_RANGES_VALID: False}


def test_sensor_adds_partitions_and_requests_runs_when_head_moves(dagster_env) -> None:
    repo, stub, database = dagster_env
    instance = DagsterInstance.ephemeral()

    first = repository_head_sensor(build_sensor_context(instance=instance))
    assert [r.partition_key for r in first.run_requests] == ["proj"]
    head = git(repo, "rev-parse", "HEAD")
    assert first.run_requests[0].run_key == f"proj@{head}<-none"
    assert first.dynamic_partitions_requests[0].partition_keys == ["proj"]
    instance.add_dynamic_partitions(PARTITIONS_NAME, ["proj"])

    # The same tick again (same cursor): nothing new.
    again = repository_head_sensor(build_sensor_context(instance=instance, cursor=first.cursor))
    assert not getattr(again, "run_requests", None)

    # Once ingested at HEAD, a tick without the cursor requests nothing either.
    assert materialize(ASSETS[:2], resources=_resources(), instance=instance, partition_key="proj").success
    quiet = repository_head_sensor(build_sensor_context(instance=instance))
    assert not getattr(quiet, "run_requests", None)

    # HEAD moves: one request, with a deterministic run key naming the move.
    write_files(repo, {"b.py": python_module("b")})
    new_head = commit_all(repo, "add b")
    moved = repository_head_sensor(build_sensor_context(instance=instance, cursor=first.cursor))
    assert [r.run_key for r in moved.run_requests] == [f"proj@{new_head}<-{head}"]
    assert json.loads(moved.cursor)["proj"] == new_head

    # A repository known only from the database (ingested by the CLI) becomes a partition too.
    async def register() -> None:
        conn = await connect(database)
        try:
            await conn.execute(
                "INSERT INTO mahavishnu.repositories (name, root_path) VALUES ('cli-only', '/nonexistent')"
            )
        finally:
            await conn.close()

    asyncio.run(register())
    tick = repository_head_sensor(build_sensor_context(instance=instance, cursor=moved.cursor))
    assert tick.dynamic_partitions_requests[0].partition_keys == ["cli-only"]


def test_nightly_schedule_requests_every_partition() -> None:
    from datetime import UTC, datetime

    # A schedule context needs an instance with a reference (an ephemeral one has none).
    with instance_for_test() as instance:
        with build_schedule_context(instance=instance) as empty:
            assert nightly_reingest(empty).skip_message
        instance.add_dynamic_partitions(PARTITIONS_NAME, ["b", "a"])
        with build_schedule_context(
            instance=instance, scheduled_execution_time=datetime(2026, 11, 22, 3, tzinfo=UTC)
        ) as context:
            requests = nightly_reingest(context)
        assert [r.partition_key for r in requests] == ["a", "b"]
        assert [r.run_key for r in requests] == ["nightly-2026-11-22T03:00-a", "nightly-2026-11-22T03:00-b"]
        assert nightly_reingest.cron_schedule == "0 3 * * *"


def test_definitions_hold_the_ingestion_objects() -> None:
    from mahavishnu_assets.definitions import defs

    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"repository_ingestion", "embedded_chunks"} <= keys
    assert defs.resolve_sensor_def("repository_head_sensor")
    assert defs.resolve_schedule_def("nightly_reingest")
    assert defs.resolve_job_def("ingest_repositories")
