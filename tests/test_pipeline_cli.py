"""`mahavishnu pipeline`: the main job end to end through Dagster on a real database, then a search."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from mahavishnu_assets.database.target import ConnectTarget
from mahavishnu_assets.testing.ollama_stub import OllamaStub


def make_repo(root: Path) -> Path:
    repo = root / "tiny-repo"
    (repo / "pkg").mkdir(parents=True)
    (repo / "pkg" / "accounts.py").write_text(
        "def getUserName(user_id: int) -> str:\n"
        '    """Look the account up and return its display name."""\n'
        "    return lookup_account(user_id).display_name\n"
    )
    (repo / "pkg" / "billing.go").write_text(
        "package billing\n\nfunc ChargeInvoice(id string) error {\n\treturn nil\n}\n"
    )
    (repo / "README.md").write_text("# Tiny\n\nA repository for the pipeline test.\n")
    (repo / "logo.txt").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(
        ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "init"],
        cwd=repo,
        check=True,
    )
    return repo


def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mahavishnu_assets.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
    )


def test_pipeline_runs_the_main_job_and_searches(
    database: ConnectTarget, settings_dir: Path, tmp_path: Path
) -> None:
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
        proc = run_cli(["pipeline", str(repo), "--query", "user name of an account", "--json"], env, tmp_path)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        assert stub.stats.texts > 0  # the official client really talked to the server

    assert out["success"] is True
    assert out["repo"] == "tiny-repo"
    assert set(out["assets"]) == {
        "pgvector_schema",
        "repository_ingestion",
        "embedded_chunks",
        "ann_index",
        "retrieval_quality",
    }
    ingest = out["assets"]["repository_ingestion"]
    assert ingest["files_changed"] == 3
    assert out["checks"] and all(out["checks"].values())
    assert out["warnings"] == []
    # Retrieval quality measured on the tiny repository: its two definitions found by their names.
    quality = out["assets"]["retrieval_quality"]
    assert quality["name/queries"] == 2 and quality["name/hit_at_10"] == 1.0
    assert 0.0 < quality["mrr_at_10"] <= 1.0
    assert "retrieval_quality:quality_not_dropped" in out["checks"]
    assert any(name.endswith(":schema_matches_migrations") for name in out["checks"])
    hits = out["search"]["results"]
    assert hits and hits[0]["path"] == "pkg/accounts.py"
    assert all(h["path"] != "logo.txt" for h in hits)
    # The run is recorded in the Dagster instance under MAHAVISHNU_HOME, whose storage is the `dagster`
    # database on the same server: no SQLite file is written.
    home = Path(out["dagster_home"])
    assert home == tmp_path / "home" / "dagster"
    assert (home / "dagster.yaml").is_file()
    assert not list(home.rglob("*.db"))
    assert out["run_id"] in dagster_runs(database)


def dagster_runs(database: ConnectTarget) -> set[str]:
    import asyncio

    import asyncpg

    async def read() -> set[str]:
        conn = await asyncpg.connect(**database.with_database("dagster").connect_kwargs())
        try:
            return {r["run_id"] for r in await conn.fetch("SELECT run_id FROM runs")}
        finally:
            await conn.close()

    return asyncio.run(read())


def test_pipeline_reports_a_missing_path_as_a_json_error(
    settings_dir: Path, tmp_path: Path, database: ConnectTarget
) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MAHAVISHNU_", "DAGSTER_"))},
        "MAHAVISHNU_SETTINGS_DIR": str(settings_dir),
        "MAHAVISHNU_HOME": str(tmp_path / "home"),
        "MAHAVISHNU_DATABASE_URL": database.libpq_url().get_secret_value(),
        "MAHAVISHNU_EMBEDDER": "local",
    }
    proc = run_cli(["pipeline", str(tmp_path / "nope"), "--json"], env, tmp_path)
    assert proc.returncode != 0
    error = json.loads(proc.stdout.strip().splitlines()[-1])
    assert error["error"] and error["suggestion"]


def test_pipeline_finishes_when_started_with_sigterm_ignored(
    database: ConnectTarget, settings_dir: Path, tmp_path: Path
) -> None:
    """A parent that ignores SIGTERM (what a Dagster process started with `&` passes on) must not leave
    Dagster's log-mirroring `tail` processes alive holding our stdout: reading it to the end would hang."""
    import signal

    repo = make_repo(tmp_path)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MAHAVISHNU_", "DAGSTER_"))},
        "MAHAVISHNU_SETTINGS_DIR": str(settings_dir),
        "MAHAVISHNU_HOME": str(tmp_path / "home"),
        "MAHAVISHNU_DATABASE_URL": database.libpq_url().get_secret_value(),
        "MAHAVISHNU_EMBEDDER": "local",
    }

    def ignore_sigterm() -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    proc = subprocess.run(
        [sys.executable, "-m", "mahavishnu_assets.cli", "pipeline", str(repo), "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=45,  # Dagster gives up on an unstoppable tail after 30 s per stream
        preexec_fn=ignore_sigterm,  # the point of the test: an inherited disposition
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["success"] is True
