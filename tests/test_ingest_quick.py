"""The quick answer of `mahavishnu ingest` (ingest/quick.py): the same report as the full path for a repository
proven unchanged, without the settings machinery, and a decline for every input or state that could change it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from mahavishnu_assets.cli import main
from mahavishnu_assets.database.pool import connect
from mahavishnu_assets.database.target import ConnectTarget
from mahavishnu_assets.ingest import quick
from mahavishnu_assets.testing.ollama_stub import OllamaStub
from tests.ingest_helpers import commit_all, make_repo, python_module, write_files

ROOT = Path(__file__).resolve().parents[1]
# Differ from run to run whichever path answers.
VOLATILE = ("run_id", "seconds", "phases")


def files() -> dict[str, str | bytes]:
    return {
        "src/alpha.py": python_module("alpha"),
        "README.md": "# Demo\n\nWords.\n",
        "logo.png": b"\x89PNG\r\n\x1a\n" + bytes(range(256)),
    }


@pytest.fixture
def env(
    database: ConnectTarget, settings_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[OllamaStub]:
    """The command's environment: the test's database (no password), an explicit embedder, the stub."""
    monkeypatch.setenv("MAHAVISHNU_DATABASE_URL", database.libpq_url().get_secret_value())
    monkeypatch.setenv("MAHAVISHNU_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MAHAVISHNU_EMBEDDER", "ollama")
    with OllamaStub(dimensions=16) as stub:
        monkeypatch.setenv("OLLAMA_HOST", stub.url)
        yield stub


def ingest(repo: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, Any]:
    assert main(["ingest", str(repo), "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def answer(repo: Path, name: str | None = None) -> dict[str, Any] | None:
    return asyncio.run(quick.answer(str(repo), name))


def steady(report: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in report.items() if k not in VOLATILE}


def answers(cache: Path) -> list[Path]:
    return sorted((cache / "mahavishnu" / "quick").glob("*.json"))


async def sql(target: ConnectTarget, statement: str, *args: Any) -> Any:
    conn = await connect(target)
    try:
        return await conn.fetch(statement, *args)
    finally:
        await conn.close()


@pytest.fixture
def proven(env: OllamaStub, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A repository whose first ingest proved it unchanged and kept a quick answer."""
    repo = make_repo(tmp_path / "demo", files())
    first = ingest(repo, capsys)
    assert first["files_changed"] == 2 and first["skipped"] == {"binary": 1}
    return repo


def test_the_command_answers_without_pydantic_and_as_the_full_path_does(
    proven: Path, database: ConnectTarget, private_cache: Path
) -> None:
    assert len(answers(private_cache)) == 1
    command = [sys.executable, "-X", "importtime", "-c", "from mahavishnu_assets.cli import run; run()"]
    quick_run = subprocess.run(
        [*command, "ingest", str(proven), "--json"], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert quick_run.returncode == 0, quick_run.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in quick_run.stderr.splitlines() if "|" in line}
    assert (
        "asyncpg" in imported and "pydantic" not in imported and "mahavishnu_assets.settings" not in imported
    )
    fast = json.loads(quick_run.stdout.strip().splitlines()[-1])

    # Another input (this variable) means another fingerprint: the full path answers, and keeps nothing.
    full_run = subprocess.run(
        [*command[:1], *command[3:], "ingest", str(proven), "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        env={**os.environ, "MAHAVISHNU_INGEST__QUICK_ANSWERS": "false"},
    )
    assert full_run.returncode == 0, full_run.stderr[-2000:]
    full = json.loads(full_run.stdout.strip().splitlines()[-1])
    assert steady(fast) == steady(full)
    assert fast["files_unchanged"] == 2 and fast["embeddings_computed"] == 0 and fast["files_read"] == 0
    assert full["run_id"] == fast["run_id"] + 1
    assert len(answers(private_cache)) == 1  # quick_answers=false wrote none

    runs = asyncio.run(
        sql(database, "SELECT id, status, stats FROM mahavishnu.ingest_runs ORDER BY id DESC LIMIT 2")
    )
    assert [r["id"] for r in runs] == [full["run_id"], fast["run_id"]]
    assert all(r["status"] == "succeeded" for r in runs)
    recorded = [r["stats"] if isinstance(r["stats"], dict) else json.loads(r["stats"]) for r in runs]
    assert steady(recorded[0]) == steady(recorded[1])


def test_human_output_is_the_same(
    proven: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["ingest", str(proven)]) == 0
    fast = capsys.readouterr().out
    monkeypatch.setenv("MAHAVISHNU_INGEST__QUICK_ANSWERS", "false")
    assert main(["ingest", str(proven)]) == 0
    full = capsys.readouterr().out
    assert fast.splitlines()[:-1] == full.splitlines()[:-1] and "files: 3 seen, 0 changed" in fast


def test_every_change_git_sees_declines(proven: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert answer(proven) is not None
    write_files(proven, {"src/alpha.py": python_module("alpha") + "\nX = 1\n"})
    assert answer(proven) is None  # modified
    commit_all(proven, "edit")
    assert answer(proven) is None  # clean again, but at a HEAD no run proved
    again = ingest(proven, capsys)
    assert again["files_changed"] == 1 and again["embeddings_computed"] == 1
    assert answer(proven) is not None  # the full run proved the new HEAD
    (proven / "new.txt").write_text("untracked\n")
    assert answer(proven) is None
    (proven / "new.txt").unlink()
    assert answer(proven) is not None


def test_other_settings_decline(
    proven: Path, settings_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert answer(proven) is not None
    (settings_dir / "local.yaml").write_text("ingest:\n  chunk_lines: 30\n")
    assert answer(proven) is None
    (settings_dir / "local.yaml").unlink()
    assert answer(proven) is not None
    monkeypatch.setenv("MAHAVISHNU_INGEST__MAX_FILE_BYTES", "10")
    assert answer(proven) is None
    monkeypatch.delenv("MAHAVISHNU_INGEST__MAX_FILE_BYTES")
    host = os.environ["OLLAMA_HOST"]
    monkeypatch.setenv("OLLAMA_HOST", "http://127.0.0.1:9")
    assert answer(proven) is None
    monkeypatch.setenv("OLLAMA_HOST", host)
    assert answer(proven) is not None
    monkeypatch.chdir(proven)  # relative settings paths would mean other files
    assert answer(proven) is None
    # Under another name the repository is another entry.
    assert answer(proven, "other") is None


def test_the_database_state_is_checked(
    proven: Path, database: ConnectTarget, private_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert answer(proven) is not None
    # A writing run clears the key first: the answer is stale, and its file goes.
    asyncio.run(sql(database, "UPDATE mahavishnu.repositories SET unchanged_key = NULL"))
    assert answer(proven) is None and answers(private_cache) == []
    again = ingest(proven, capsys)  # the full path proves it again (reading nothing) and keeps the answer
    assert again["files_read"] == 0 and len(answers(private_cache)) == 1
    assert answer(proven) is not None

    # A second space of the model: the full path would ask the server which one; so no quick answer.
    asyncio.run(
        sql(
            database,
            "INSERT INTO mahavishnu.embedding_spaces (provider, model, dimensions) VALUES ('ollama', $1, 8)",
            "nomic-embed-text",
        )
    )
    assert answer(proven) is None
    asyncio.run(sql(database, "DELETE FROM mahavishnu.embedding_spaces WHERE dimensions = 8"))
    ingest(proven, capsys)
    assert answer(proven) is not None

    # Migrations other than those the full path checked (here: one recorded with another checksum).
    newest = asyncio.run(sql(database, "SELECT max(version) AS v FROM public.mahavishnu_schema_migrations"))[
        0
    ]["v"]
    asyncio.run(
        sql(
            database,
            "UPDATE public.mahavishnu_schema_migrations SET checksum = 'x' WHERE version = $1",
            newest,
        )
    )
    assert answer(proven) is None


def test_a_failed_last_run_and_a_server_away_decline(
    proven: Path, database: ConnectTarget, private_cache: Path
) -> None:
    asyncio.run(
        sql(
            database,
            """UPDATE mahavishnu.ingest_runs SET status = 'failed'
               WHERE id = (SELECT max(id) FROM mahavishnu.ingest_runs)""",
        )
    )
    assert answer(proven) is None
    assert answers(private_cache) == []  # declined as stale
    # A kept answer pointing at a server that is not there declines (and the full path reports the error).
    fingerprint = quick.inputs_fingerprint(str(proven.resolve()), None)
    assert fingerprint is not None
    quick.save(
        fingerprint,
        {
            "repo": "demo",
            "root": str(proven.resolve()),
            "connect": {
                "target": {"host": "127.0.0.1", "port": 9, "database": "x", "user": "x"},
                "timeout": 1.0,
                "command_timeout": 5.0,
                "application_name": "t",
            },
            "facts": {},
            "space": {"id": 1, "provider": "ollama", "model": "m", "dimensions": 16},
            "migrations": "",
            "warnings": [],
        },
    )
    assert answer(proven) is None


def test_nothing_is_kept_with_a_password_or_the_auto_embedder(
    env: OllamaStub,
    tmp_path: Path,
    private_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    repo = make_repo(tmp_path / "demo", files())
    monkeypatch.setenv("MAHAVISHNU_EMBEDDER", "auto")
    ingest(repo, capsys)
    ingest(repo, capsys)
    assert answers(private_cache) == []
    monkeypatch.setenv("MAHAVISHNU_EMBEDDER", "ollama")
    monkeypatch.setenv("PGPASSWORD", "not-needed-here")
    assert quick.inputs_fingerprint(str(repo.resolve()), None) is None
    ingest(repo, capsys)
    assert answers(private_cache) == []
    monkeypatch.delenv("PGPASSWORD")
    monkeypatch.setenv("MAHAVISHNU_OLLAMA_URL", "http://user:secret@127.0.0.1:1")
    assert quick.inputs_fingerprint(str(repo.resolve()), None) is None
    monkeypatch.delenv("MAHAVISHNU_OLLAMA_URL")
    ingest(repo, capsys)
    kept = answers(private_cache)
    assert len(kept) == 1 and os.stat(kept[0]).st_mode & 0o077 == 0
    text = kept[0].read_text()
    assert "password" not in text.lower() and "secret" not in text


def test_code_and_migration_files_are_inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "pkg"
    write_files(package, {"a.py": "A = 1\n", "sub/b.sql": "SELECT 1;\n", "__pycache__/a.pyc": b"x"})
    migrations = tmp_path / "migrations"
    write_files(migrations, {"0001_x.up.sql": "SELECT 1;\n"})
    monkeypatch.setattr(quick, "PACKAGE_DIR", package)
    monkeypatch.setenv("MAHAVISHNU_MIGRATIONS_DIR", str(migrations))
    before = quick.inputs_fingerprint("/r", None)
    assert before == quick.inputs_fingerprint("/r", None)
    (package / "__pycache__" / "a.pyc").write_bytes(b"y")  # compiled files are not inputs
    assert quick.inputs_fingerprint("/r", None) == before
    os.utime(package / "sub" / "b.sql", (1, 1))
    changed = quick.inputs_fingerprint("/r", None)
    assert changed != before
    os.utime(migrations / "0001_x.up.sql", (2, 2))
    assert quick.inputs_fingerprint("/r", None) != changed
    assert quick.inputs_fingerprint("/r", "name") != quick.inputs_fingerprint("/r", None)


def test_a_corrupt_answer_declines(proven: Path, private_cache: Path) -> None:
    path = answers(private_cache)[0]
    path.write_text("{not json")
    assert answer(proven) is None
    path.write_text(json.dumps({"format": quick.FORMAT, "repo": "demo", "root": str(proven.resolve())}))
    assert answer(proven) is None  # missing fields


async def test_codec_free_connection_records_the_same_run(database: ConnectTarget) -> None:
    """The quick path records with a plain asyncpg connection (no jsonb codec): the stats land as JSON."""
    from mahavishnu_assets.ingest import store

    conn = await asyncpg.connect(**database.connect_kwargs())
    try:
        space = await conn.fetchval(
            "INSERT INTO mahavishnu.embedding_spaces (provider, model, dimensions) VALUES ('t', 't', 4) RETURNING id"
        )
        repo = await conn.fetchval(
            "INSERT INTO mahavishnu.repositories (name, root_path) VALUES ('r', '/r') RETURNING id"
        )
        run = await store.record_unchanged_run(conn, repo, "abc", space, json.dumps({"files_seen": 3}))
        stats = await conn.fetchval(
            "SELECT stats->>'files_seen' FROM mahavishnu.ingest_runs WHERE id = $1", run
        )
    finally:
        await conn.close()
    assert stats == "3"
