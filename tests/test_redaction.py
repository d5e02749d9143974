"""Passwords never reach an error, a log, CLI output or Dagster metadata, even when a connection fails."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest
from pydantic import SecretStr

from mahavishnu_assets.database.pool import Database, PoolConfig, connect
from mahavishnu_assets.database.target import ConnectTarget, target_from_url
from mahavishnu_assets.errors import DatabaseUnavailableError, MahavishnuError, redact

SECRET = "Tr0ub4dor&3-xyzzy"


def test_redact_patterns() -> None:
    assert SECRET not in redact(f"postgresql://bob:{SECRET}@host/db")
    assert SECRET not in redact(f"host=h password={SECRET} dbname=x")
    assert SECRET not in redact(f"oops {SECRET}", [SECRET])
    err = MahavishnuError(f"failed postgresql://bob:{SECRET}@host/db", suggestion=f"retry password={SECRET}")
    assert SECRET not in json.dumps(err.to_dict())
    assert SECRET not in str(err)


def test_target_repr_and_describe_hide_password() -> None:
    target = target_from_url(SecretStr(f"postgresql://bob:{SECRET}@db.internal:5433/mem?sslmode=disable"))
    assert (target.user, target.host, target.port, target.database) == ("bob", "db.internal", 5433, "mem")
    assert SECRET not in repr(target)
    assert SECRET not in target.describe()
    assert target.connect_kwargs()["password"] == SECRET
    again = target_from_url(target.libpq_url())
    assert again.password is not None and again.password.get_secret_value() == SECRET
    assert again.options == {"sslmode": "disable"}
    assert SECRET not in str(target.libpq_url())


async def test_failed_connection_error_hides_password(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    target = target_from_url(SecretStr(f"postgresql://bob:{SECRET}@127.0.0.1:1/mem"))
    with pytest.raises(DatabaseUnavailableError) as info:
        await Database(target, PoolConfig(connect_timeout=2)).open()
    assert SECRET not in json.dumps(info.value.to_dict())
    assert SECRET not in caplog.text


async def test_server_side_rejection_hides_password(server_target: ConnectTarget) -> None:
    # A role that does not exist: the server answers, and the error must still carry no password.
    bad = ConnectTarget(
        host=server_target.host,
        port=server_target.port,
        database="postgres",
        user="nobody_here",
        password=SecretStr(SECRET),
    )
    with pytest.raises(DatabaseUnavailableError) as info:
        await connect(bad)
    assert SECRET not in json.dumps(info.value.to_dict())


def test_cli_json_error_hides_password(tmp_path, settings_dir) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "MAHAVISHNU_SETTINGS_DIR": str(settings_dir),
        "MAHAVISHNU_DATABASE_URL": f"postgresql://bob:{SECRET}@127.0.0.1:1/mem",
        "MAHAVISHNU_POSTGRES__CONNECT_TIMEOUT_SECONDS": "2",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "mahavishnu_assets.cli", "up", "--json", "--verbose"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert proc.returncode != 0
    assert SECRET not in proc.stdout + proc.stderr
    error = json.loads(proc.stdout.strip().splitlines()[-1])
    assert error["error"] == "database_unavailable"
    assert error["suggestion"]


def test_dagster_metadata_and_logs_hide_password(database: ConnectTarget, settings_dir, monkeypatch) -> None:
    from dagster import DagsterInstance, materialize

    from mahavishnu_assets.defs.resources import PostgresResource
    from mahavishnu_assets.defs.schema import pgvector_schema

    # The embedded server trusts local sockets, so any password is accepted: the run succeeds and we can
    # inspect everything it recorded.
    url = database.libpq_url().get_secret_value().replace("postgres@", f"postgres:{SECRET}@")
    monkeypatch.setenv("MAHAVISHNU_DATABASE_URL", url)
    instance = DagsterInstance.ephemeral()
    result = materialize([pgvector_schema], resources={"postgres": PostgresResource()}, instance=instance)
    assert result.success
    records = instance.all_logs(result.run_id)
    dumped = "\n".join(str(r) for r in records)
    assert "schema_version" in dumped
    assert SECRET not in dumped
    run = instance.get_run_by_id(result.run_id)
    assert run is not None and SECRET not in str(run.run_config)
