"""OpenTelemetry metrics: off by default, on with the standard OTEL_* variables."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mahavishnu_assets.database.target import ConnectTarget
from mahavishnu_assets.errors import ConfigurationError
from mahavishnu_assets.telemetry import configure_from_environment, server_label

RECORD = (
    "from mahavishnu_assets import telemetry\n"
    "print('exporting', telemetry.configure_from_environment())\n"
    "telemetry.search_duration.record(0.25, {'mode': 'hybrid'})\n"
)


def run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return subprocess.run(
        [sys.executable, "-c", RECORD], capture_output=True, text=True, env={**base, **env}, timeout=120
    )


def test_metrics_stay_off_without_an_exporter() -> None:
    for env in ({}, {"OTEL_METRICS_EXPORTER": "none"}):
        proc = run(env)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == "exporting False"


def test_console_exporter_exports_what_was_recorded() -> None:
    proc = run({"OTEL_METRICS_EXPORTER": "console", "OTEL_SERVICE_NAME": "mahavishnu-test"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("exporting True")
    # The provider's shutdown at exit flushes the last reading.
    assert "mahavishnu.search.duration" in proc.stdout
    assert "mahavishnu-test" in proc.stdout
    assert '"mode": "hybrid"' in proc.stdout


def test_an_unknown_exporter_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "carrier-pigeon")
    with pytest.raises(ConfigurationError) as info:
        configure_from_environment()
    assert "otlp" in info.value.to_dict()["suggestion"]


def test_server_label_keeps_no_credentials_or_path() -> None:
    assert server_label("http://user:secret@gpu-1:11434/api") == "http://gpu-1:11434"
    assert server_label("gpu-2:11434") == "http://gpu-2:11434"
    assert server_label("https://ollama.example") == "https://ollama.example"


PIPELINE = """
import asyncio, json, sys
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

reader = InMemoryMetricReader()
metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))

from mahavishnu_assets.database.server import open_database
from mahavishnu_assets.ingest.pipeline import ingest_repository
from mahavishnu_assets.search.service import search_text
from mahavishnu_assets.settings import load_settings


async def main():
    settings = load_settings()
    db = await open_database(settings)
    try:
        await ingest_repository(db, settings, sys.argv[1], name="metrics-repo")
        await search_text(db, settings, "parse the configuration", mode="hybrid")
        await search_text(db, settings, "configuration", mode="text")
    finally:
        await db.close()


asyncio.run(main())
seen = {}
for rm in reader.get_metrics_data().resource_metrics:
    for sm in rm.scope_metrics:
        for m in sm.metrics:
            for point in m.data.data_points:
                value = getattr(point, "value", None)
                if value is None:
                    value = point.count
                key = m.name + "|" + ",".join(f"{k}={v}" for k, v in sorted(point.attributes.items()))
                seen[key] = value
print(json.dumps(seen))
"""


def test_ingest_search_and_pool_metrics_reach_an_sdk_reader(
    database: ConnectTarget, settings_dir: Path, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "config.py").write_text("def parse_configuration(path):\n    return open(path).read()\n")
    (repo / "notes.md").write_text("# Notes\n\nHow the configuration is parsed.\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAHAVISHNU_", "OTEL_"))}
    env.update(
        MAHAVISHNU_SETTINGS_DIR=str(settings_dir),
        MAHAVISHNU_HOME=str(tmp_path / "home"),
        MAHAVISHNU_DATABASE_URL=database.libpq_url().get_secret_value(),
        MAHAVISHNU_EMBEDDER="hashing",
    )
    proc = subprocess.run(
        [sys.executable, "-c", PIPELINE, str(repo)], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["mahavishnu.ingest.files|outcome=changed,repo=metrics-repo"] == 2
    assert seen["mahavishnu.ingest.chunks|outcome=written,repo=metrics-repo"] >= 2
    assert seen["mahavishnu.ingest.embeddings|outcome=computed,repo=metrics-repo"] >= 2
    assert seen["mahavishnu.ingest.stage.duration|stage=discover"] == 1
    assert seen["mahavishnu.search.duration|mode=hybrid"] == 1
    assert seen["mahavishnu.search.duration|mode=text"] == 1
    assert seen["mahavishnu.search.results|mode=hybrid"] == 1
    assert seen["mahavishnu.pool.acquire.duration|"] > 0
    assert seen["mahavishnu.pool.connections.in_use|"] == 0  # every connection handed back
