"""`mahavishnu snapshot ...`, `mahavishnu maintain` and the pool part of `mahavishnu status`, in process."""

from __future__ import annotations

import asyncio
import json

import pytest

from mahavishnu_assets.cli import main
from mahavishnu_assets.database.pool import connect
from mahavishnu_assets.database.target import ConnectTarget

PASSWORD = "cli-Secret-pw"


@pytest.fixture
def cli_env(database: ConnectTarget, settings_dir, monkeypatch: pytest.MonkeyPatch) -> ConnectTarget:
    # The test server trusts local connections: the password rides along everywhere without being needed.
    url = (
        database.libpq_url()
        .get_secret_value()
        .replace("postgresql://postgres@", f"postgresql://postgres:{PASSWORD}@")
    )
    monkeypatch.setenv("MAHAVISHNU_DATABASE_URL", url)
    return database


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    code = main([*argv, "--json"])
    out = capsys.readouterr()
    assert PASSWORD not in out.out + out.err
    return code, json.loads(out.out.strip().splitlines()[-1])


def sql(target: ConnectTarget, statement: str) -> object:
    async def go() -> object:
        conn = await connect(target)
        try:
            return await conn.fetchval(statement)
        finally:
            await conn.close()

    return asyncio.run(go())


def test_snapshot_commands(cli_env: ConnectTarget, capsys: pytest.CaptureFixture[str]) -> None:
    sql(
        cli_env, "INSERT INTO mahavishnu.memories (memory_type, content) VALUES ('agent', 'the first memory')"
    )
    code, created = run(capsys, "snapshot", "create", "--name", "before-change")
    assert code == 0
    snap = created["snapshot"]
    assert snap["name"] == "before-change" and snap["stats"]["rows"]["memories"] == 1

    sql(cli_env, "UPDATE mahavishnu.memories SET content = 'overwritten'")
    code, listed = run(capsys, "snapshot", "list")
    assert code == 0 and [s["id"] for s in listed["snapshots"]] == [snap["id"]]
    code, found = run(capsys, "snapshot", "search", "first", "--id", str(snap["id"]))
    assert code == 0 and found["results"][0]["content"] == "the first memory"

    code, restored = run(capsys, "snapshot", "restore", str(snap["id"]))
    assert code == 0
    assert restored["snapshot"]["id"] == snap["id"]
    assert restored["restored"]["memories"]["updated"] == 1
    assert restored["safety_snapshot"]["name"] == f"before-restore-of-{snap['id']}"
    assert sql(cli_env, "SELECT content FROM mahavishnu.memories") == "the first memory"

    code, shown = run(capsys, "snapshot", "show", str(snap["id"]))
    assert code == 0 and shown["snapshot"]["restored_at"]
    code, stats = run(capsys, "snapshot", "stats")
    assert code == 0 and stats["stats"]["snapshots"] == 2

    code, deleted = run(capsys, "snapshot", "delete", str(snap["id"]))
    assert code == 0 and deleted == {"snapshot": deleted["snapshot"], "deleted": True}
    code, error = run(capsys, "snapshot", "delete", str(snap["id"]))
    assert code == 1 and error["error"] == "not_found" and "snapshot list" in error["suggestion"]


def test_human_output(cli_env: ConnectTarget, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["snapshot", "create", "--name", "human"]) == 0
    assert "human" in capsys.readouterr().out
    assert main(["snapshot", "list"]) == 0
    assert "#" in capsys.readouterr().out
    assert main(["snapshot", "show", "424242"]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_maintain(cli_env: ConnectTarget, capsys: pytest.CaptureFixture[str]) -> None:
    sql(
        cli_env,
        "INSERT INTO mahavishnu.cache_entries (key, value, expires_at) "
        "SELECT 'k' || g, '1', now() - interval '1 second' FROM generate_series(1, 4) g",
    )
    code, report = run(capsys, "maintain", "--no-reindex")
    assert code == 0
    assert report["cache_entries_removed"] == 4
    for key in (
        "sessions_removed",
        "snapshots_removed",
        "tables_vacuumed",
        "indexes_rebuilt",
        "dead_tuples_before",
    ):
        assert isinstance(report[key], int)
    assert report["tables_vacuumed"] > 0
    code, report = run(capsys, "maintain", "--no-vacuum", "--no-reindex")
    assert code == 0 and report["cache_entries_removed"] == 0 and report["tables_vacuumed"] == 0


def test_status_has_pool_health_and_recommendations(
    cli_env: ConnectTarget, capsys: pytest.CaptureFixture[str]
) -> None:
    code, status = run(capsys, "status")
    assert code == 0
    assert status["healthy"] is True
    assert status["pool"]["health"] in ("green", "yellow", "red")
    assert {i["name"] for i in status["pool"]["indicators"]} >= {
        "utilisation",
        "wait_p95_ms",
        "acquire_p95_ms",
    }
    recs = status["recommendations"]
    assert {r["setting"] for r in recs} >= {"postgres.pool_max_size", "shared_buffers", "work_mem"}
    assert all(r["reason"] for r in recs)
