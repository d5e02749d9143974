"""`mahavishnu ingest` end to end: JSON fields of the interface, human output, errors, progress bar."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from mahavishnu_assets.cli import main
from mahavishnu_assets.database.target import ConnectTarget
from mahavishnu_assets.ingest.progress import Progress, ProgressBar, Throttled
from mahavishnu_assets.testing.ollama_stub import OllamaStub
from tests.ingest_helpers import make_repo, python_module

INTERFACE_FIELDS = {
    "repo",
    "commit",
    "files_seen",
    "files_changed",
    "files_deleted",
    "files_skipped",
    "skipped",
    "chunks_written",
    "chunks_deleted",
    "embeddings_computed",
    "embeddings_reused",
    "seconds",
}


@pytest.fixture
def cli_env(database: ConnectTarget, settings_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MAHAVISHNU_DATABASE_URL", database.libpq_url().get_secret_value())
    monkeypatch.setenv("MAHAVISHNU_HOME", str(tmp_path / "home"))
    with OllamaStub(dimensions=16) as stub:
        monkeypatch.setenv("OLLAMA_HOST", stub.url)
        yield stub


def _last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_ingest_json_then_unchanged(
    cli_env: OllamaStub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = make_repo(
        tmp_path / "proj", {"a.py": python_module("a"), "b.md": "# B\n\ntext\n", "c.bin": b"\x00\x01"}
    )
    assert main(["ingest", str(repo), "--json"]) == 0
    first = _last_json(capsys.readouterr().out)
    assert INTERFACE_FIELDS <= set(first)
    assert first["repo"] == "proj" and len(first["commit"]) == 40
    assert first["files_seen"] == 3 and first["files_changed"] == 2
    assert first["skipped"] == {"binary": 1} and first["files_skipped"] == 1
    assert first["embeddings_computed"] > 0 and first["embedding_space"].startswith("ollama:")
    assert first["warnings"] == []  # Ollama was reachable: no fallback to announce

    assert main(["ingest", str(repo), "--name", "proj", "--json"]) == 0
    second = _last_json(capsys.readouterr().out)
    assert second["embeddings_computed"] == 0 and second["files_changed"] == 0
    assert second["chunks_written"] == 0 and second["files_skipped"] == 1

    # `mahavishnu status` reports the ingest domain beside the pool's figures.
    assert main(["status", "--json"]) == 0
    status = _last_json(capsys.readouterr().out)
    assert [(r["name"], r["files"], r["last_run"]) for r in status["repositories"]] == [
        ("proj", 2, "succeeded")
    ]
    assert status["ingest_recommendations"] == [] and status["pool"]["health"]


def test_fallback_to_local_is_announced(
    database: ConnectTarget,
    settings_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("MAHAVISHNU_DATABASE_URL", database.libpq_url().get_secret_value())
    monkeypatch.setenv("OLLAMA_HOST", "http://127.0.0.1:9")  # nothing listens there
    repo = make_repo(tmp_path / "proj", {"a.py": python_module("a")}, use_git=False)
    assert main(["ingest", str(repo), "--json"]) == 0
    result = _last_json(capsys.readouterr().out)
    assert result["embedding_space"] == "local:wordllama-l2-supercat-words/256"
    assert "not reachable" in result["warnings"][0]
    assert any(
        r.levelname == "WARNING" and "offline local embedder" in r.getMessage() for r in caplog.records
    )


def test_human_output_and_errors(
    cli_env: OllamaStub, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path / "proj", {"a.py": python_module("a")})
    assert main(["ingest", str(repo)]) == 0
    out = capsys.readouterr().out
    assert "proj @" in out and "files: 1 seen, 1 changed" in out and "embeddings:" in out

    assert main(["ingest", str(tmp_path / "missing"), "--json"]) == 1
    error = _last_json(capsys.readouterr().out)
    assert error["error"] == "ingest_error" and "does not exist" in error["message"] and error["suggestion"]

    cli_env.configure(error_status=404)
    repo2 = make_repo(tmp_path / "proj2", {"z.py": python_module("z")})
    monkeypatch.setenv("MAHAVISHNU_EMBED_MODEL", "not-pulled")
    assert main(["ingest", str(repo2), "--json"]) == 1
    error = _last_json(capsys.readouterr().out)
    assert error["error"] == "embedding_error" and "ollama pull not-pulled" in error["suggestion"]


def test_progress_bar_draws_and_clears() -> None:
    stream = io.StringIO()
    bar = ProgressBar(stream)
    sink = Throttled(bar, interval=0)
    sink(Progress(phase="discover"))
    sink(Progress(phase="ingest", files_total=4, files_done=2, chunks_written=7, embeddings_computed=5))
    drawn = stream.getvalue()
    assert "ingest" in drawn and "2/4" in drawn and "7 chunks, 5 embedded" in drawn
    bar.close()
    cleared = stream.getvalue()[len(drawn) :]
    assert cleared.endswith("\r") and cleared.strip() == ""  # the bar's line is blanked
