"""Flaky and several embedding servers: faults survived with the clean run's database, load spread, bad servers
benched or refused, an incomplete run counted and completed by the next one, metrics per server."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mahavishnu_assets.database.pool import Database
from mahavishnu_assets.database.target import ConnectTarget
from mahavishnu_assets.errors import EmbeddingIncompleteError, EmbeddingMismatchError
from mahavishnu_assets.ingest.embed import OllamaEmbedder, ollama_options
from mahavishnu_assets.ingest.pipeline import ingest_repository
from mahavishnu_assets.ingest.servers import ollama_reachable
from mahavishnu_assets.settings import Settings
from mahavishnu_assets.telemetry import server_label
from mahavishnu_assets.testing.ollama_stub import OllamaStub
from tests.ingest_helpers import DIMENSIONS, fingerprint, ingest_settings, make_repo, python_module

MODULES = 24
COPIES = 3
FILES = MODULES + COPIES


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    files = {f"pkg/mod_{i:02d}.py": python_module(f"mod{i}", 4) for i in range(MODULES)}
    # The same contents in other files (other batches): embedded once, shared between batches.
    files.update({f"copies/mod_{i:02d}.py": python_module(f"mod{i * 7}", 4) for i in range(COPIES)})
    return make_repo(tmp_path / "repo", files)


@pytest.fixture
def stubs() -> Iterator[list[OllamaStub]]:
    servers = [OllamaStub(dimensions=DIMENSIONS).start() for _ in range(2)]
    yield servers
    for server in servers:
        server.stop()


def closed_port_url() -> str:
    """The address of a port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def settings_for(database: ConnectTarget, home: Path, hosts: str, **ollama: Any) -> Settings:
    base = ingest_settings(database, home, hosts, max_chunk_chars=200)
    values = {
        "batch_size": 4,
        "timeout_seconds": 2.0,
        "max_retries": 3,
        "retry_backoff_seconds": 0.01,
        "circuit_cooldown_seconds": 0.05,
        **ollama,
    }
    return base.model_copy(update={"ollama": base.ollama.model_copy(update=values)})


COUNTS = ("files_changed", "files_added", "chunks_written", "embeddings_computed", "embeddings_reused")


async def clean_print(db: Database, settings: Settings, repo: Path) -> str:
    """The fingerprint of a clean run of `repo` (the database emptied again afterwards)."""
    return (await clean_run(db, settings, repo))[0]


async def clean_run(db: Database, settings: Settings, repo: Path) -> tuple[str, dict[str, int]]:
    """The fingerprint and counts of a clean run of `repo` (the database emptied again afterwards)."""
    result = await ingest_repository(db, settings, repo)
    async with db.connection() as conn:
        clean = await fingerprint(conn)
        await conn.execute("TRUNCATE mahavishnu.repositories, mahavishnu.embeddings CASCADE")
    return clean, {k: getattr(result, k) for k in COUNTS}


FAULTS = {
    "every_2nd": ({"fail_every": 2}, {}),
    "every_3rd": ({"fail_every": 3}, {}),
    "random_30pct": ({"fail_ratio": 0.3, "fail_seed": 7}, {}),
    "resets": ({"reset_every": 3}, {}),
    # Longer than the request's deadline: each such request times out and is sent again.
    "hangs": ({"hang_every": 4, "hang_seconds": 5.0}, {"timeout_seconds": 0.5}),
    # No budget: every failed request sets its batch aside at once, the final passes embed them.
    "every_2nd_no_budget": ({"fail_every": 2}, {"retry_budget_min": 0, "retry_budget_ratio": 0.0}),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
async def test_each_fault_is_survived_with_the_clean_runs_database(
    db: Database,
    database: ConnectTarget,
    tmp_path: Path,
    repo: Path,
    stubs: list[OllamaStub],
    fault: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    stub = stubs[0]
    stub_faults, ollama = FAULTS[fault]
    settings = settings_for(database, tmp_path / "home", stub.url, **ollama)
    clean, counts = await clean_run(db, settings, repo)
    stub.reset()
    stub.configure(**stub_faults)
    with caplog.at_level(logging.WARNING):
        result = await ingest_repository(db, settings, repo)
    async with db.connection() as conn:
        assert await fingerprint(conn) == clean
    assert {k: getattr(result, k) for k in COUNTS} == counts
    assert result.files_changed == FILES
    faults = stub.stats.failures + stub.stats.resets + stub.stats.hangs
    assert faults > 0, "the fault never happened: the test proves nothing"
    if fault == "every_2nd_no_budget":
        assert "Set aside " in caplog.text
        assert "final pass 1 of 2" in caplog.text


async def test_batches_spread_over_servers_and_a_dead_one_is_benched(
    db: Database, database: ConnectTarget, tmp_path: Path, repo: Path, stubs: list[OllamaStub]
) -> None:
    one = settings_for(database, tmp_path / "home", stubs[0].url)
    clean = await clean_print(db, one, repo)
    for stub in stubs:
        stub.reset()
    dead = closed_port_url()
    hosts = ",".join([stubs[0].url, dead, stubs[1].url])
    settings = settings_for(database, tmp_path / "home", hosts)
    assert settings.ollama.urls == [stubs[0].url, dead, stubs[1].url]
    embedder = OllamaEmbedder(ollama_options(settings))
    try:
        result = await ingest_repository(db, settings, repo, embedder=embedder)
        stats = embedder.server_stats()
    finally:
        await embedder.aclose()
    async with db.connection() as conn:
        assert await fingerprint(conn) == clean
    assert result.files_changed == FILES
    assert stubs[0].stats.embed_requests > 1 and stubs[1].stats.embed_requests > 1
    assert stubs[0].stats.texts + stubs[1].stats.texts >= result.embeddings_computed
    # The dead one failed its probe, was benched at once, and took none of the texts.
    assert stats[dead]["texts"] == 0 and stats[dead]["failures"] >= 1
    assert stats[stubs[0].url]["texts"] > 0 and stats[stubs[1].url]["texts"] > 0


async def test_servers_of_different_sizes_are_refused_never_mixed(
    db: Database, database: ConnectTarget, tmp_path: Path, repo: Path, stubs: list[OllamaStub]
) -> None:
    stubs[1].configure(dimensions=DIMENSIONS * 2)
    both = settings_for(database, tmp_path / "home", f"{stubs[0].url},{stubs[1].url}")
    # A first run probes each server: their sizes disagree, so nothing starts.
    with pytest.raises(EmbeddingMismatchError) as info:
        await ingest_repository(db, both, repo)
    message = info.value.message
    assert stubs[0].url in message and stubs[1].url in message
    assert f"{DIMENSIONS}" in message and f"{DIMENSIONS * 2}" in message
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM mahavishnu.chunks") == 0
        assert await conn.fetchval("SELECT count(*) FROM mahavishnu.embedding_spaces") == 0

    # Once the space is known (a run against the right server), the other one is refused by its answers.
    one = settings_for(database, tmp_path / "home", stubs[0].url)
    clean = await clean_print(db, one, repo)  # emptied again, but the space row stays
    embedder = OllamaEmbedder(ollama_options(both))
    try:
        await ingest_repository(db, both, repo, embedder=embedder)
        stats = embedder.server_stats()
    finally:
        await embedder.aclose()
    assert stats[stubs[1].url]["refused"] and "dimension" in stats[stubs[1].url]["refused"]
    assert stubs[1].stats.embed_requests >= 1
    async with db.connection() as conn:
        assert await fingerprint(conn) == clean


async def test_an_exhausted_run_counts_what_it_left_and_the_next_embeds_only_that(
    db: Database, database: ConnectTarget, tmp_path: Path, repo: Path, stubs: list[OllamaStub]
) -> None:
    stub = stubs[0]
    settings = settings_for(
        database,
        tmp_path / "home",
        stub.url,
        max_retries=0,
        retry_budget_min=0,
        retry_budget_ratio=0.0,
        final_passes=0,
    )
    clean = await clean_print(db, settings, repo)
    stub.reset()
    stub.configure(fail_ratio=0.4, fail_seed=3)
    with pytest.raises(EmbeddingIncompleteError) as info:
        await ingest_repository(db, settings, repo)
    error = info.value.to_dict()
    left = error["details"]["unembedded_texts"]
    assert 0 < left and error["details"]["unembedded_chunks"] >= left
    assert 0 < error["details"]["files"] < FILES
    assert "next `mahavishnu ingest`" in error["suggestion"]
    async with db.connection() as conn:
        # What was stored is whole: every stored chunk has its vector; the files left out are absent.
        assert (
            await conn.fetchval(
                """SELECT count(*) FROM mahavishnu.chunks c WHERE NOT EXISTS (
                       SELECT 1 FROM mahavishnu.embeddings e WHERE e.content_hash = c.content_hash)"""
            )
            == 0
        )
        stored = await conn.fetchval("SELECT count(*) FROM mahavishnu.source_files")
        status = await conn.fetchval("SELECT status FROM mahavishnu.ingest_runs ORDER BY id DESC LIMIT 1")
    assert stored == FILES - error["details"]["files"]
    assert status == "failed"

    stub.configure(fail_ratio=0.0)
    stub.reset()
    again = await ingest_repository(db, settings, repo)
    assert stub.stats.texts == left
    assert again.embeddings_computed == left
    assert again.files_changed == error["details"]["files"]
    async with db.connection() as conn:
        assert await fingerprint(conn) == clean


def test_reachable_and_auto_understand_several_hosts(stubs: list[OllamaStub], settings_dir: Path) -> None:
    dead = closed_port_url()
    assert ollama_reachable(f"{dead},{stubs[0].url}") is None
    why = ollama_reachable([dead, closed_port_url()])
    assert why is not None and why.count("http://127.0.0.1:") == 2
    chosen = Settings(embedder="auto", ollama={"host": f"{dead}, {stubs[1].url}/"})
    assert chosen.ollama.urls == [dead, stubs[1].url]
    from mahavishnu_assets.ingest.embed import make_embedder

    assert isinstance(make_embedder(chosen), OllamaEmbedder)
    listed = Settings(embedder="auto", ollama={"host": stubs[0].url, "hosts": [dead, dead]})
    assert listed.ollama.urls == [dead]
    fallback = make_embedder(listed)
    assert not isinstance(fallback, OllamaEmbedder)
    assert fallback.announcement and dead in fallback.announcement


def test_the_official_client_loads_with_several_hosts_in_its_variable() -> None:
    """The `ollama` package parses OLLAMA_HOST when imported and takes one URL: a list must not break it."""
    hosts = "http://127.0.0.1:1,http://127.0.0.1:2"
    code = (
        "import os\n"
        "from mahavishnu_assets.ingest.ollama_client import ollama\n"
        "from mahavishnu_assets.settings import Settings\n"
        "print(os.environ['OLLAMA_HOST'], ollama.AsyncClient.__name__, ','.join(Settings().ollama.urls))\n"
    )
    env = {**os.environ, "OLLAMA_HOST": hosts}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == [hosts, "AsyncClient", hosts]


def test_status_reports_each_embedding_server(
    database: ConnectTarget,
    settings_dir: Path,
    stubs: list[OllamaStub],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from mahavishnu_assets.cli import main

    dead = closed_port_url()
    monkeypatch.setenv("MAHAVISHNU_DATABASE_URL", database.libpq_url().get_secret_value())
    monkeypatch.setenv("OLLAMA_HOST", f"{stubs[0].url},{dead}")
    assert main(["status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    embedding = status["embedding"]
    assert embedding["embedder"] == "auto"
    assert [(s["url"], s["reachable"]) for s in embedding["servers"]] == [(stubs[0].url, True), (dead, False)]
    assert embedding["servers"][1]["reason"]
    monkeypatch.setenv("MAHAVISHNU_EMBEDDER", "local")
    assert main(["status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["embedding"]["servers"] == []


# -- metrics ---------------------------------------------------------------------------------------------------
METRICS_RUN = """
import json, sys
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

reader = InMemoryMetricReader()
metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
from mahavishnu_assets.cli import main

code = main(sys.argv[1:])
points = []
for resource in reader.get_metrics_data().resource_metrics:
    for scope in resource.scope_metrics:
        for metric in scope.metrics:
            for point in metric.data.data_points:
                points.append({
                    "name": metric.name,
                    "attributes": dict(point.attributes),
                    "value": getattr(point, "value", None),
                    "count": getattr(point, "count", None),
                })
print(json.dumps({"exit": code, "points": points}))
"""


def _sum(points: list[dict[str, Any]], name: str, field: str = "value", **attributes: str) -> int:
    return sum(
        p[field]
        for p in points
        if p["name"] == name and all(p["attributes"].get(k) == v for k, v in attributes.items())
    )


def test_metrics_per_server_after_an_ingest_against_a_healthy_and_a_failing_server(
    database: ConnectTarget, tmp_path: Path, repo: Path, stubs: list[OllamaStub], settings_dir: Path
) -> None:
    healthy, failing = stubs
    failing.configure(fail_every=2)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAHAVISHNU_", "OTEL_"))}
    env.update(
        {
            "MAHAVISHNU_DATABASE_URL": database.libpq_url().get_secret_value(),
            "MAHAVISHNU_SETTINGS_DIR": str(settings_dir),
            "MAHAVISHNU_HOME": str(tmp_path / "home"),
            "MAHAVISHNU_EMBEDDER": "ollama",
            "OLLAMA_HOST": f"{healthy.url},{failing.url}",
            "MAHAVISHNU_OLLAMA__BATCH_SIZE": "4",
            "MAHAVISHNU_OLLAMA__RETRY_BACKOFF_SECONDS": "0.01",
            "MAHAVISHNU_INGEST__MAX_CHUNK_CHARS": "200",
        }
    )
    proc = subprocess.run(
        [sys.executable, "-c", METRICS_RUN, "ingest", str(repo), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    report = json.loads(lines[-2])
    assert report["files_changed"] == FILES
    points = json.loads(lines[-1])["points"]
    good, bad = server_label(healthy.url), server_label(failing.url)
    requests = "mahavishnu.embed.requests"
    # Every request either server answered is counted, by server and outcome, as each stub saw it.
    assert _sum(points, requests, server=good, outcome="ok") == healthy.stats.embed_requests
    assert _sum(points, requests, server=good, outcome="error") == 0
    assert _sum(points, requests, server=bad, outcome="error") == failing.stats.failures > 0
    assert (
        _sum(points, requests, server=bad, outcome="ok")
        == failing.stats.embed_requests - failing.stats.failures
    )
    assert _sum(points, "mahavishnu.embed.failures", server=bad, kind="http_503") == failing.stats.failures
    assert _sum(points, "mahavishnu.embed.failures", server=good) == 0
    # Each failure was retried (the budget is far from spent), and retries are the failing server's.
    assert _sum(points, "mahavishnu.embed.retries", server=bad) == failing.stats.failures
    assert _sum(points, "mahavishnu.embed.retries", server=good) == 0
    durations = _sum(points, "mahavishnu.embed.request.duration", "count", server=good)
    assert durations == healthy.stats.embed_requests
