"""The retrieval_quality asset and its quality_not_dropped warning check, run by Dagster on a real database:
figures as numeric metadata per repository partition, compared with the partition's previous materialization."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml
from dagster import AssetCheckSeverity, AssetSelection, DagsterInstance, materialize

from mahavishnu_assets.database.pool import connect
from mahavishnu_assets.database.target import ConnectTarget
from mahavishnu_assets.defs.ingestion import PARTITIONS_NAME, embedded_chunks, repository_ingestion
from mahavishnu_assets.defs.quality import QUALITY_NOT_DROPPED, quality_not_dropped, retrieval_quality
from mahavishnu_assets.defs.resources import OllamaResource, PostgresResource
from mahavishnu_assets.defs.schema import pgvector_schema
from mahavishnu_assets.testing.ollama_stub import OllamaStub
from tests.ingest_helpers import make_repo
from tests.quality_corpus import files

QUALITY = [retrieval_quality, quality_not_dropped]
# Every vector moved to the next content hash: vector search returns unrelated chunks.
SCRAMBLE = """
WITH ranked AS (
    SELECT space_id, content_hash, embedding,
           row_number() OVER (PARTITION BY space_id ORDER BY content_hash) AS n,
           count(*) OVER (PARTITION BY space_id) AS total
      FROM mahavishnu.embeddings)
UPDATE mahavishnu.embeddings e SET embedding = nxt.embedding
  FROM ranked cur JOIN ranked nxt ON nxt.space_id = cur.space_id AND nxt.n = cur.n % cur.total + 1
 WHERE e.space_id = cur.space_id AND e.content_hash = cur.content_hash"""


@pytest.fixture
def quality_env(database: ConnectTarget, settings_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MAHAVISHNU_DATABASE_URL", database.libpq_url().get_secret_value())
    monkeypatch.setenv("MAHAVISHNU_HOME", str(tmp_path / "home"))
    repo = make_repo(tmp_path / "shop", files())
    (settings_dir / "local.yaml").write_text(
        yaml.safe_dump({"ingest": {"repositories": [{"name": "shop", "path": str(repo)}]}})
    )
    with OllamaStub(dimensions=64) as stub:
        monkeypatch.setenv("OLLAMA_HOST", stub.url)
        monkeypatch.setenv("MAHAVISHNU_EMBEDDER", "ollama")
        yield database


def _resources() -> dict[str, object]:
    return {"postgres": PostgresResource(), "ollama": OllamaResource()}


def _quality(instance: DagsterInstance, mode: str = "hybrid", **kwargs: object):
    return materialize(
        QUALITY,
        resources=_resources(),
        instance=instance,
        partition_key="shop",
        run_config={"ops": {"retrieval_quality": {"config": {"mode": mode}}}},
        **kwargs,
    )


def _check(result):
    [evaluation] = result.get_asset_check_evaluations()
    assert evaluation.check_name == QUALITY_NOT_DROPPED
    assert evaluation.severity == AssetCheckSeverity.WARN
    return evaluation


def _execute(target: ConnectTarget, sql: str) -> None:
    async def run() -> None:
        conn = await connect(target)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def test_quality_is_recorded_per_partition_and_a_drop_warns(quality_env) -> None:
    database = quality_env
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(PARTITIONS_NAME, ["shop"])
    first = materialize(
        [pgvector_schema, repository_ingestion, embedded_chunks, *QUALITY],
        resources=_resources(),
        instance=instance,
        partition_key="shop",
    )
    assert first.success
    [mat] = first.asset_materializations_for_node("retrieval_quality")
    assert mat.partition == "shop"
    meta = mat.metadata
    assert meta["mode"].value == "hybrid"
    assert meta["queries"].value == 7 + 11 + 2  # names, lines, docstrings of the small repository
    for key in ("mrr_at_10", "hit_at_10", "hit_at_1"):
        assert 0.0 < meta[key].value <= 1.0
        for kind in ("name", "line", "docstring"):
            assert 0.0 <= meta[f"{kind}/{key}"].value <= 1.0
    assert meta["name/hit_at_10"].value == 1.0 and meta["name/mrr_at_10"].value >= 0.75
    assert meta["name/queries"].value == 7
    assert "| kind | query |" in meta["examples"].value
    check = _check(first)
    assert check.passed and check.metadata["verdict"].value == "first run"

    # Unchanged data: the same figures, and the check holds.
    again = _quality(instance)
    assert (
        again.asset_materializations_for_node("retrieval_quality")[0].metadata["mrr_at_10"]
        == meta["mrr_at_10"]
    )
    held = _check(again)
    assert held.passed and held.metadata["verdict"].value == "held"
    assert held.metadata["previous_mrr_at_10"].value == meta["mrr_at_10"].value

    # Another mode is not compared with hybrid.
    vector = _quality(instance, "vector")
    assert _check(vector).passed
    assert "not comparable" in _check(vector).metadata["verdict"].value
    before = vector.asset_materializations_for_node("retrieval_quality")[0].metadata["mrr_at_10"].value

    # Vectors scrambled: vector search gets worse, and the warning fires (the run itself still succeeds).
    _execute(database, SCRAMBLE)
    worse = _quality(instance, "vector")
    assert worse.success
    after = worse.asset_materializations_for_node("retrieval_quality")[0].metadata["mrr_at_10"].value
    assert after < 0.9 * before
    dropped = _check(worse)
    assert not dropped.passed
    assert dropped.metadata["verdict"].value == "dropped"
    assert dropped.metadata["previous_mrr_at_10"].value == before
    assert "mrr_at_10" in dropped.metadata["drops"].value

    # A checks-only run (no partition) compares every repository's last two measurements.
    checks_only = materialize(
        QUALITY,
        resources=_resources(),
        instance=instance,
        selection=AssetSelection.checks(quality_not_dropped),
    )
    overall = _check(checks_only)
    assert not overall.passed
    assert overall.metadata["scope"].value == "all repositories"
    assert "| shop | dropped |" in overall.metadata["repositories"].value


def test_definitions_run_quality_after_ingestion_in_both_jobs() -> None:
    from mahavishnu_assets.definitions import defs

    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert "retrieval_quality" in keys
    for job in ("memory_refresh", "ingest_repositories"):
        nodes = set(defs.resolve_job_def(job).graph.node_names())
        assert {"retrieval_quality", "retrieval_quality_quality_not_dropped", "embedded_chunks"} <= nodes, job
    graph = defs.resolve_asset_graph()
    parents = {k.to_user_string() for k in graph.get(retrieval_quality.key).parent_keys}
    assert parents == {"embedded_chunks", "ann_index"}
