"""Where Dagster keeps its runs, event logs and schedules: a `dagster` database on the memory's own server.

The local instance (`dagster.yaml` at the repository root, copied into the CLI's DAGSTER_HOME) names this as its
storage, so `dagster dev`, its run workers, the daemon and `mahavishnu pipeline` all share one PostgreSQL: the
embedded server under MAHAVISHNU_HOME by default, or the external server of MAHAVISHNU_DATABASE_URL.
"""

from __future__ import annotations

import psycopg
from psycopg import sql
from pydantic import SecretStr

from mahavishnu_assets.database.target import ConnectTarget
from mahavishnu_assets.errors import ConfigurationError
from mahavishnu_assets.settings import Settings

DAGSTER_DATABASE = "dagster"


def _connect(target: ConnectTarget) -> psycopg.Connection:
    kwargs = target.connect_kwargs()
    kwargs["dbname"] = kwargs.pop("database")
    if "ssl" in kwargs:
        kwargs["sslmode"] = kwargs.pop("ssl")
    return psycopg.connect(autocommit=True, connect_timeout=10, **kwargs)


def ensure_dagster_database(memory: ConnectTarget, database: str) -> None:
    """Create Dagster's database beside the memory's when it is missing (on an external server that needs the
    CREATEDB right)."""
    # The embedded server always has `postgres`; on an external one the memory's database is the one this user
    # is known to reach.
    maintenance = "postgres" if memory.kind == "embedded" else memory.database
    with _connect(memory.with_database(maintenance)) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone():
            return
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        except psycopg.errors.DuplicateDatabase:
            pass  # another process (the webserver, the daemon) created it first
        except psycopg.errors.InsufficientPrivilege:
            raise ConfigurationError(
                f"Dagster's database {database!r} does not exist and this user may not create it",
                suggestion=f"Create it once (CREATE DATABASE {database}) or grant CREATEDB.",
            ) from None


def dagster_storage_url(settings: Settings, database: str = DAGSTER_DATABASE) -> SecretStr:
    """The URL of Dagster's database (created if missing) on the server the settings resolve to."""
    from mahavishnu_assets.database.server import resolve_target

    memory = resolve_target(settings)
    ensure_dagster_database(memory, database)
    # dagster-postgres writes `NOTIFY run_events, %(id)s`, which only psycopg2's client-side parameters accept;
    # SQLAlchemy 2.1 made psycopg 3 the default driver of `postgresql://`, so the driver is named.
    return memory.with_database(database).libpq_url("postgresql+psycopg2")
