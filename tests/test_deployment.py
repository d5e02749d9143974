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


def load_instance(home: Path, env: dict[str, str]) -> list[str]:
    """Load the instance in DAGSTER_HOME=home in a new process, run a one-asset job in it (its events go through
    the event log's NOTIFY), and return the class names of its parts."""
    code = (
        "from dagster import DagsterInstance, asset, materialize\n"
        "i = DagsterInstance.get()\n"
        "@asset\n"
        "def probe() -> int:\n"
        "    return 1\n"
        "assert materialize([probe], instance=i).success\n"
        "print(type(i.run_storage).__name__, type(i.event_log_storage).__name__,"
        " type(i.schedule_storage).__name__, type(i.run_coordinator).__name__, type(i.run_launcher).__name__)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**env, "DAGSTER_HOME": str(home)},
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.split()


def test_local_dagster_yaml_keeps_dagster_in_the_embedded_postgres(tmp_path: Path) -> None:
    """With no environment at all, the local instance starts the embedded server and keeps its runs, events
    and schedules in a `dagster` database there: no SQLite file."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "MAHAVISHNU_"))}
    env["MAHAVISHNU_HOME"] = str(tmp_path / "mahavishnu")
    try:
        parts = load_instance(home, env)
    finally:
        subprocess.run([sys.executable, "-m", "mahavishnu_assets.cli", "down"], env=env, timeout=120)
    assert parts == [
        "PostgresRunStorage",
        "PostgresEventLogStorage",
        "PostgresScheduleStorage",
        "QueuedRunCoordinator",
        "DefaultRunLauncher",
    ]
    assert not list(home.rglob("*.db"))


def test_docker_instance_launches_each_run_in_its_own_container(
    database: ConnectTarget, tmp_path: Path
) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "docker" / "dagster.yaml", home / "dagster.yaml")
    # The driver as docker-compose.yml names it.
    env = dict(os.environ, DAGSTER_POSTGRES_URL=database.libpq_url("postgresql+psycopg2").get_secret_value())
    assert load_instance(home, env) == [
        "PostgresRunStorage",
        "PostgresEventLogStorage",
        "PostgresScheduleStorage",
        "QueuedRunCoordinator",
        "DockerRunLauncher",
    ]
    config = yaml.safe_load((ROOT / "docker" / "dagster.yaml").read_text())["run_launcher"]["config"]
    # Only names are passed on: each value comes from the daemon's environment when a run starts.
    assert all(re.fullmatch(r"[A-Z_]+", name) for name in config["env_vars"])
    assert {"MAHAVISHNU_DATABASE_URL", "OLLAMA_HOST", "DAGSTER_POSTGRES_URL"} <= set(config["env_vars"])


def test_compose_wires_the_docker_run_launcher(compose: dict) -> None:
    launcher = yaml.safe_load((ROOT / "docker" / "dagster.yaml").read_text())["run_launcher"]["config"]
    services = compose["services"]
    image = services["user-code"]["image"]
    assert services["user-code"]["environment"]["DAGSTER_CURRENT_IMAGE"] == image
    for name in ("webserver", "daemon"):
        assert "/var/run/docker.sock:/var/run/docker.sock" in services[name]["volumes"]
        assert services[name]["image"] == image
    # Run containers join the compose network and mount the repositories volume by their fixed names.
    assert compose["networks"]["default"]["name"] == launcher["network"]
    volume = launcher["container_kwargs"]["volumes"][0].split(":")[0]
    assert compose["volumes"]["repositories"]["name"] == volume
    # The driver the Docker instance test loads with: dagster-postgres's NOTIFY needs psycopg2.
    storage_url = services["daemon"]["environment"]["DAGSTER_POSTGRES_URL"]
    assert storage_url.startswith("postgresql+psycopg2://")


@pytest.fixture(scope="module")
def helm_values() -> dict:
    return yaml.safe_load((ROOT / "deploy" / "kubernetes" / "values.yaml").read_text())


def test_helm_values_hold_no_secret(helm_values: dict) -> None:
    text = (ROOT / "deploy" / "kubernetes" / "values.yaml").read_text()
    assert not re.search(r"(?i)password\s*:", text)
    assert not re.search(r"://[^:/\s]+:[^@\s]+@", text.split("\n\n", 1)[1])  # past the usage comment
    assert helm_values["generatePostgresqlPasswordSecret"] is False
    assert helm_values["postgresql"]["enabled"] is False
    assert helm_values["global"]["postgresqlSecretName"]
    launcher = helm_values["runLauncher"]["config"]["k8sRunLauncher"]
    assert [s["name"] for s in launcher["envSecrets"]] == ["mahavishnu-secrets"]
    assert not any("DATABASE_URL" in v for v in launcher["envVars"])


def test_instance_loads_with_the_k8s_run_launcher(
    helm_values: dict, database: ConnectTarget, tmp_path: Path
) -> None:
    """The launcher and queue settings of the Helm values, as the chart renders them into the instance, load
    into a real instance (storage on a real PostgreSQL; a kubeconfig file stands in for the cluster's own)."""
    values = helm_values["runLauncher"]["config"]["k8sRunLauncher"]
    queue = helm_values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
                "users": [{"name": "u", "user": {}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    # What the chart renders from `postgresql` (its dagsterYaml.postgresql.config), pointed at the test's server.
    pg = helm_values["postgresql"]
    socket = database.host.startswith("/")
    postgres_db = {
        "username": database.user,
        "password": {"env": "DAGSTER_PG_PASSWORD"},
        "hostname": "" if socket else database.host,
        "db_name": database.database,
        "port": database.port,
        "params": {"host": database.host} if socket else {},
        "scheme": pg["postgresqlScheme"],
    }
    instance = {
        "storage": {"postgres": {"postgres_db": postgres_db}},
        "run_coordinator": {
            "module": "dagster.core.run_coordinator",
            "class": "QueuedRunCoordinator",
            "config": {
                "max_concurrent_runs": queue["maxConcurrentRuns"],
                "tag_concurrency_limits": queue["tagConcurrencyLimits"],
            },
        },
        "run_launcher": {
            "module": "dagster_k8s",
            "class": "K8sRunLauncher",
            "config": {
                "image_pull_policy": values["imagePullPolicy"],
                "env_secrets": [s["name"] for s in values["envSecrets"]],
                "env_vars": values["envVars"],
                "resources": values["resources"],
                "service_account_name": "dagster",
                "instance_config_map": "dagster-instance",
                "postgres_password_secret": helm_values["global"]["postgresqlSecretName"],
                "dagster_home": "/opt/dagster/dagster_home",
                "job_namespace": "mahavishnu",
                "load_incluster_config": False,
                "kubeconfig_file": str(kubeconfig),
            },
        },
    }
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(instance))
    password = database.password.get_secret_value() if database.password else ""
    env = dict(os.environ, DAGSTER_PG_PASSWORD=password)
    assert load_instance(home, env)[-2:] == ["QueuedRunCoordinator", "K8sRunLauncher"]


def test_workspace_loads_the_code_location(tmp_path: Path) -> None:
    # A throw-away instance: validating the code needs none, and the repository's own would start the embedded
    # server under the working directory.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "MAHAVISHNU_"))}
    env.update(DAGSTER_HOME=str(tmp_path), MAHAVISHNU_HOME=str(tmp_path / "mahavishnu"))
    proc = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", str(ROOT / "workspace.yaml")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
