"""The one Definitions object: every asset, check, job, sensor, schedule and resource of the project."""

from __future__ import annotations

from types import ModuleType

from dagster import Definitions

from mahavishnu_assets.defs import index, ingestion, memory, pipeline, quality, schema
from mahavishnu_assets.defs.resources import PostgresResource

DOMAINS: list[ModuleType] = [schema, ingestion, index, quality, memory, pipeline]


def _gather(name: str) -> list:
    return [item for module in DOMAINS for item in getattr(module, name, [])]


defs = Definitions(
    assets=_gather("ASSETS"),
    asset_checks=_gather("CHECKS"),
    jobs=_gather("JOBS"),
    sensors=_gather("SENSORS"),
    schedules=_gather("SCHEDULES"),
    resources={
        "postgres": PostgresResource(),
        **{k: v for m in DOMAINS for k, v in getattr(m, "RESOURCES", {}).items()},
    },
)
