"""Deployment files: docker-compose (parsed; no engine runs here), dagster.yaml on a real PostgreSQL, workspace."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mahavishnu_assets.database.target import ConnectTarget

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_has_every_service_with_a_health_check(compose: dict) -> None:
    services = compose["services"]
    assert set(services) >= {"postgres", "ollama", "webserver", "daemon", "user-code"}
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        check = service.get("healthcheck")
        assert check and check["test"], f"{name} has no health check"
    assert services["postgres"]["image"].startswith("pgvector/pgvector:")
    assert services["ollama"]["image"].startswith("ollama/ollama")
    # Dagster waits for a healthy database and code server, not merely a started one.
    for name in ("webserver", "daemon"):
        deps = services[name]["depends_on"]
        assert deps["postgres"]["condition"] == "service_healthy"
        assert deps["user-code"]["condition"] == "service_healthy"


def test_compose_hard_codes_no_secret(compose: dict) -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    # Every password is interpolated from the environment, and required to be set.
    for line in text.splitlines():
        if re.search(r"PASSWORD\s*:", line) or re.search(r"://[^:\s]+:[^@\s]+@", line):
            assert "${POSTGRES_PASSWORD:?" in line, line
    env = compose["x-dagster-env"]
    assert "${POSTGRES_PASSWORD:?" in env["MAHAVISHNU_DATABASE_URL"]
    # The webserver is published on loopback only.
    assert all(p.startswith("127.0.0.1:") for p in compose["services"]["webserver"]["ports"])


def test_compose_validates_with_docker_client_when_present(tmp_path: Path) -> None:
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("no docker compose client on this machine (the engine is not needed for `config`)")
    env = dict(os.environ, POSTGRES_PASSWORD="from-the-environment")
    proc = subprocess.run(
        [docker, "compose", "-f", str(ROOT / "docker-compose.yml"), "config", "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    missing = subprocess.run(
        [docker, "compose", "-f", str(ROOT / "docker-compose.yml"), "config", "--quiet"],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "POSTGRES_PASSWORD"},
        cwd=ROOT,
    )
    assert missing.returncode != 0 and "POSTGRES_PASSWORD" in missing.stderr


def test_dagster_yaml_instance_on_real_postgres(database: ConnectTarget, tmp_path: Path) -> None:
    """The deployment instance config (docker/dagster.yaml), pointed by env at a real PostgreSQL."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "docker" / "dagster.yaml", home / "dagster.yaml")
    code = (
        "from dagster import DagsterInstance\n"
        "i = DagsterInstance.get()\n"
        "print(type(i.run_storage).__name__, type(i.event_log_storage).__name__,"
        " type(i.run_coordinator).__name__, len(i.get_runs()))\n"
    )
    env = dict(
        os.environ,
        DAGSTER_HOME=str(home),
        DAGSTER_POSTGRES_URL=database.libpq_url().get_secret_value(),
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == [
        "PostgresRunStorage",
        "PostgresEventLogStorage",
        "QueuedRunCoordinator",
        "0",
    ]


def test_local_dagster_yaml_needs_no_environment(tmp_path: Path) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    code = (
        "from dagster import DagsterInstance\n"
        "i = DagsterInstance.get()\n"
        "print(type(i.run_storage).__name__, type(i.run_coordinator).__name__)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGSTER_")}
    env["DAGSTER_HOME"] = str(home)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["SqliteRunStorage", "QueuedRunCoordinator"]


def test_workspace_loads_the_code_location() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", str(ROOT / "workspace.yaml")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
