"""`mahavishnu search`, `mahavishnu index` and the index part of `mahavishnu status`, through the CLI entry point
on a real database, with a repository ingested by `mahavishnu ingest` and the offline local embedder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mahavishnu_assets.cli import main
from mahavishnu_assets.database.target import ConnectTarget

FILES = {
    "app/users.py": "def getUserName(user_id):\n    '''The display name of a user.'''\n    return lookup(user_id).name\n",
    "app/server.py": "class HTTPServer:\n    def serve_forever(self):\n        while True:\n            self.handle()\n",
    "app/frob.py": "def parseFrobnicatorConfig(path):\n    return load_yaml(path)\n",
    "web/codec.js": "export function base64Encode(bytes) {\n  return btoa(bytes)\n}\n",
    "README.md": "# Demo\n\nA small repository for search tests.\n",
}


@pytest.fixture
def cli_env(
    database: ConnectTarget, settings_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    monkeypatch.setenv("MAHAVISHNU_DATABASE_URL", database.libpq_url().get_secret_value())
    monkeypatch.setenv("MAHAVISHNU_EMBEDDER", "local")
    monkeypatch.setenv("MAHAVISHNU_HOME", str(tmp_path / "home"))
    repo = tmp_path / "demo"
    for path, text in FILES.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)
    return repo


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    code = main([*argv, "--json"])
    out = capsys.readouterr().out.strip().splitlines()
    return code, json.loads(out[-1])


def test_search_before_ingest_says_to_ingest(cli_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "search", "anything")
    assert code != 0 and out["error"] == "search_error" and "ingest" in out["suggestion"]
    code, out = run(capsys, "index")
    assert code != 0 and out["error"] == "index_error" and "ingest" in out["suggestion"]


def test_search_modes_filters_and_fields(cli_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "ingest", str(cli_env), "--name", "demo")
    assert code == 0 and out["chunks_written"] >= len(FILES)
    for mode in ("vector", "text", "hybrid"):
        code, out = run(capsys, "search", "parseFrobnicatorConfig", "--mode", mode, "--k", "3")
        assert code == 0, out
        assert out["mode"] == mode and len(out["results"]) >= 1
        hit = out["results"][0]
        assert {"repo", "path", "start_line", "end_line", "score", "content"} <= set(hit)
        assert hit["repo"] == "demo" and hit["path"] == "app/frob.py"
        scores = [h["score"] for h in out["results"]]
        assert scores == sorted(scores, reverse=True)
    code, out = run(capsys, "search", "user name", "--mode", "text")
    assert out["results"][0]["path"] == "app/users.py"
    code, out = run(capsys, "search", "serve", "--path-prefix", "web/", "--mode", "vector")
    assert code == 0 and {h["path"] for h in out["results"]} == {"web/codec.js"}
    code, out = run(capsys, "search", "bytes", "--language", "javascript", "--exact")
    assert code == 0 and out["results"] and {h["path"] for h in out["results"]} == {"web/codec.js"}
    code, out = run(capsys, "search", "serve", "--repo", "other'; DROP TABLE x; --")
    assert code == 0 and out["results"] == [] and out["notices"]
    code, out = run(capsys, "search", "serve", "--repo", "a\x00b")
    assert code != 0 and out["error"] == "search_error" and "NUL" in out["message"]
    code, out = run(capsys, "search", "serve", "--k", "0")
    assert code != 0 and out["error"] == "search_error"


def test_index_builds_and_status_reports_it(
    cli_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run(capsys, "ingest", str(cli_env), "--name", "demo")
    code, out = run(capsys, "index")
    assert code == 0 and out["method"] == "exact" and out["recall_at_10"] == 1.0
    monkeypatch.setenv("MAHAVISHNU_INDEX__MIN_ROWS_FOR_INDEX", "3")
    code, out = run(capsys, "index", "--target-recall", "0.9")
    assert code == 0, out
    for key in ("method", "params", "rows", "recall_at_10", "build_seconds", "search_params"):
        assert key in out
    assert out["method"] == "ivfflat" and out["params"] == {"lists": 1} and out["build_seconds"] > 0
    assert out["recall_at_10"] >= 0.9 and out["target_recall"] == 0.9
    assert list(out["search_params"]) == ["ivfflat.probes"]
    code, found = run(capsys, "search", "getUserName", "--mode", "vector")
    assert found["method"] == "ivfflat" and found["search_params"] == out["search_params"]
    code, exact = run(capsys, "search", "getUserName", "--mode", "vector", "--exact")
    assert exact["method"] == "exact" and exact["search_params"] == {}
    code, status = run(capsys, "status")
    assert code == 0
    assert status["indexes"][0]["index"] == out["index"] and status["indexes"][0]["valid"]
    assert status["invalid_ann_indexes"] == []
    code, out = run(capsys, "index", "--target-recall", "1.5")
    assert code != 0 and out["error"] == "index_error"
