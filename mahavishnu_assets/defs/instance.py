"""The local Dagster instance's storage: runs, event logs and schedules in the memory's own PostgreSQL."""

from __future__ import annotations

from typing import Any

from dagster import Field, StringSource
from dagster_postgres import DagsterPostgresStorage

from mahavishnu_assets.database.dagster_storage import DAGSTER_DATABASE, dagster_storage_url
from mahavishnu_assets.settings import load_settings


class MahavishnuPostgresStorage(DagsterPostgresStorage):
    """dagster-postgres storage on the server the project's settings resolve to: the embedded one under
    MAHAVISHNU_HOME (started when needed) or MAHAVISHNU_DATABASE_URL's. Only the database name is configured,
    so no URL or password is written in dagster.yaml or shown on the UI's instance page."""

    @classmethod
    def config_type(cls) -> dict[str, Field]:
        return {"database": Field(StringSource, is_required=False, default_value=DAGSTER_DATABASE)}

    @classmethod
    def from_config_value(cls, inst_data: Any, config_value: Any) -> MahavishnuPostgresStorage:
        url = dagster_storage_url(load_settings(), config_value.get("database", DAGSTER_DATABASE))
        return cls(postgres_url=url.get_secret_value(), inst_data=inst_data)
