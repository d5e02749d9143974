"""The Dagster UI in a real browser: `dagster dev` from the repository root on the project's instance (storage in
the memory's PostgreSQL), the main job run from the CLI and from the UI's own daemon, then every asset page, the
ingestion's metadata, the index's recall and the asset checks' results seen in headless Chromium.

Screenshots are saved under `artifacts/ui/` at the repository root (CI keeps them), or MAHAVISHNU_UI_ARTIFACTS.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from mahavishnu_assets.database.target import ConnectTarget
from mahavishnu_assets.testing.ollama_stub import OllamaStub
from tests.test_pipeline_cli import dagster_runs, make_repo, run_cli

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
ARTIFACTS = Path(os.environ.get("MAHAVISHNU_UI_ARTIFACTS", ROOT / "artifacts" / "ui"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
JOB_ASSETS = ("pgvector_schema", "repository_ingestion", "embedded_chunks", "ann_index", "retrieval_quality")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(url: str, proc: subprocess.Popen[bytes], seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        assert proc.poll() is None, "dagster dev exited"
        assert time.monotonic() < deadline, f"{url} did not answer"
        time.sleep(0.5)


@pytest.fixture
def dagster_dev(
    database: ConnectTarget, settings_dir: Path, tmp_path: Path
) -> Iterator[tuple[str, dict, str]]:
    """The main job run once by `mahavishnu pipeline`, then `dagster dev` from the repository root with the same
    settings: both reach the same instance storage (the `dagster` database on the test's server)."""
    repo = make_repo(tmp_path)
    with OllamaStub(dimensions=64) as stub:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("MAHAVISHNU_", "DAGSTER_"))},
            "MAHAVISHNU_SETTINGS_DIR": str(settings_dir),
            "MAHAVISHNU_HOME": str(tmp_path / "home"),
            "MAHAVISHNU_DATABASE_URL": database.libpq_url().get_secret_value(),
            "MAHAVISHNU_EMBEDDER": "ollama",
            "OLLAMA_HOST": stub.url,
        }
        proc = run_cli(["pipeline", str(repo), "--json"], env, tmp_path)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        cli_run = json.loads(proc.stdout.strip().splitlines()[-1])["run_id"]

        port = free_port()
        log = (tmp_path / "dagster-dev.log").open("wb")
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dagster",
                "dev",
                "-w",
                "workspace.yaml",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its webserver, daemon and code server are stopped as one group
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for(f"{url}/server_info", server)
            yield url, {"repo": repo.name, "cli_run": cli_run}, (tmp_path / "dagster-dev.log").as_posix()
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
            log.close()


def launch_from_the_ui_server(url: str, repo: str) -> str:
    """A run of the main job submitted through the webserver's GraphQL API and carried out by dagster dev's
    daemon (queued coordinator, default launcher)."""
    from dagster import DagsterRunStatus
    from dagster_graphql import DagsterGraphQLClient

    host, port = url.removeprefix("http://").split(":")
    client = DagsterGraphQLClient(host, port_number=int(port))
    run_id = client.submit_job_execution(
        "memory_refresh",
        repository_location_name="mahavishnu_assets",
        tags={"dagster/partition": repo, "mahavishnu/repository": repo},
    )
    deadline = time.monotonic() + 300
    while (status := client.get_run_status(run_id)) not in (
        DagsterRunStatus.SUCCESS,
        DagsterRunStatus.FAILURE,
        DagsterRunStatus.CANCELED,
    ):
        assert time.monotonic() < deadline, f"run {run_id} still {status}"
        time.sleep(1)
    assert status == DagsterRunStatus.SUCCESS, run_id
    return run_id


def test_the_ui_shows_assets_metadata_and_checks(
    dagster_dev: tuple[str, dict, str], database: ConnectTarget
) -> None:
    from playwright.sync_api import sync_playwright

    url, facts, _log = dagster_dev
    ui_run = launch_from_the_ui_server(url, facts["repo"])
    # Both runs are in the one storage the CLI and dagster dev share.
    assert {facts["cli_run"], ui_run} <= dagster_runs(database)

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    assert CHROMIUM is not None
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})

        def show(path: str, shot: str, *expected: str) -> str:
            page.goto(f"{url}{path}")
            for text in expected:
                page.get_by_text(text, exact=True).first.wait_for(timeout=60_000)
            page.screenshot(path=str(ARTIFACTS / f"{shot}.png"), full_page=True)
            return page.inner_text("body")

        show("/assets", "catalog", *JOB_ASSETS)
        for key in JOB_ASSETS:
            show(f"/assets/{key}", key, key)
        ingestion = show(
            "/assets/repository_ingestion",
            "repository_ingestion_metadata",
            "files_changed",
            "chunks_written",
            "embeddings_computed",
        )
        assert "tiny-repo" in ingestion
        index = show("/assets/ann_index", "ann_index_recall", "recall_at_10")
        assert "recall@10" in index or "recall_at_10" in index
        show("/assets/retrieval_quality", "retrieval_quality_metadata", "mrr_at_10", "hit_at_10")
        for key in JOB_ASSETS:
            body = show(f"/assets/{key}?view=checks", f"{key}_checks", "Succeeded")
            assert "Failed" not in body, key
        browser.close()
    assert {p.name for p in ARTIFACTS.glob("*.png")} >= {f"{k}_checks.png" for k in JOB_ASSETS}
