"""OpenTelemetry metrics: off by default, on with the standard OTEL_* variables."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

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
