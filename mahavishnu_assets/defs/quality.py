"""Retrieval quality in Dagster: per repository partition, after each ingestion, MRR@10 and hit@10 of known-item
queries sampled from what was ingested (see `search.quality`), and a warning when they drop.

The figures are numeric metadata, so the asset's page plots each repository's retrieval quality run after run.
The asset runs after the ANN index in the main job, so it measures the search users get.
"""

# No `from __future__ import annotations`: Dagster inspects the real type hints of asset functions.

from typing import Any

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetRecordsFilter,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)
from pydantic import Field

from mahavishnu_assets.defs.index import ann_index
from mahavishnu_assets.defs.ingestion import PARTITIONS_NAME, embedded_chunks, repositories_partitions
from mahavishnu_assets.defs.resources import OllamaResource, PostgresResource
from mahavishnu_assets.search.core import MODES
from mahavishnu_assets.search.quality import (
    DEFAULT_COUNT,
    DROP_METRICS,
    DROP_TOLERANCE,
    QualityReport,
    measure_quality,
    quality_drops,
)

# Names the UI, alerts and tests refer to.
RETRIEVAL_QUALITY = "retrieval_quality"
QUALITY_NOT_DROPPED = "quality_not_dropped"
EXAMPLES_SHOWN = 5


class RetrievalQualityConfig(Config):
    queries: int = Field(
        default=DEFAULT_COUNT, ge=3, le=600, description="Known-item queries sampled (a third of each kind)."
    )
    mode: str = Field(default="hybrid", description="Search mode measured: hybrid, vector or text.")


def _examples(report: QualityReport) -> str:
    worst = report.worst(EXAMPLES_SHOWN)
    if not worst:
        return "no queries"
    lines = ["| kind | query | expected | rank | first hit |", "|---|---|---|---|---|"]
    for o in worst:
        query = o.item.query.replace("|", "\\|")
        query = query if len(query) <= 80 else query[:77] + "..."
        lines.append(
            f"| {o.item.kind} | `{query}` | {o.item.target()} | {o.rank or 'not in top 10'} | {o.top or ''} |"
        )
    return "\n".join(lines)


def _metadata(report: QualityReport, requested: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "repo": MetadataValue.text(report.repo),
        "mode": MetadataValue.text(report.mode),
        "requested_queries": MetadataValue.int(requested),
        "seconds": MetadataValue.float(round(report.seconds, 3)),
        "examples": MetadataValue.md(_examples(report)),
    }
    for key, value in report.figures().items():
        out[key] = MetadataValue.int(value) if isinstance(value, int) else MetadataValue.float(value)
    return out


@asset(
    partitions_def=repositories_partitions,
    deps=[embedded_chunks, ann_index],
    group_name="quality",
    description="Retrieval quality of the repository: MRR@10 and hit@10 of known-item queries sampled from what "
    "is stored (a definition's name, a distinctive line, a docstring's first sentence without its own chunk).",
)
async def retrieval_quality(
    context: AssetExecutionContext,
    config: RetrievalQualityConfig,
    postgres: PostgresResource,
    ollama: OllamaResource,
) -> MaterializeResult:
    if config.mode not in MODES or config.mode == "symbol":
        raise ValueError(f"mode must be hybrid, vector or text, got {config.mode!r}")
    name = context.partition_key
    settings = ollama.effective_settings(postgres.settings)
    embedder = ollama.embedder(postgres.settings) if config.mode != "text" else None
    try:
        report = await measure_quality(
            postgres.db, settings, name, count=config.queries, mode=config.mode, embedder=embedder
        )
    finally:
        if embedder is not None:
            await embedder.aclose()
    overall = report.scores()
    context.log.info(
        "%s: MRR@10 %.3f, hit@10 %.3f over %d queries (%s) in %.1fs",
        name,
        overall.mrr_at_10,
        overall.hit_at_10,
        overall.queries,
        ", ".join(f"{kind} {report.scores(kind).queries}" for kind in ("name", "line", "docstring")),
        report.seconds,
    )
    return MaterializeResult(metadata=_metadata(report, config.queries))


def _values(metadata: dict[str, Any]) -> dict[str, Any]:
    return {key: getattr(value, "value", value) for key, value in metadata.items()}


def _compare(context: AssetCheckExecutionContext, partition: str) -> tuple[str, list[str], dict[str, Any]]:
    """(verdict, drops, figures) for one partition: its latest materialization against the one before."""
    records = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=retrieval_quality.key, asset_partitions=[partition]), limit=2
    ).records
    current = [r.asset_materialization for r in records if r.asset_materialization is not None]
    if len(current) < 2:
        return "first run", [], _values(current[0].metadata) if current else {}
    now, before = _values(current[0].metadata), _values(current[1].metadata)
    figures = {**now, **{f"previous_{key}": before.get(key) for key in DROP_METRICS}}
    same = ("mode", "requested_queries")
    if any(now.get(key) != before.get(key) for key in same):
        return "not comparable (mode or sample size changed)", [], figures
    drops = quality_drops(now, before)
    return ("dropped" if drops else "held"), drops, figures


@asset_check(
    asset=retrieval_quality,
    name=QUALITY_NOT_DROPPED,
    description=f"Warns when the repository's MRR@10 or hit@10 is more than {DROP_TOLERANCE:.0%} below its "
    "previous measurement (passes on the first).",
)
def quality_not_dropped(context: AssetCheckExecutionContext) -> AssetCheckResult:
    # Not partitioned itself (like the ingestion checks): the run's partition, or every repository.
    scope = context.run.tags.get("dagster/partition")
    partitions = [scope] if scope else sorted(context.instance.get_dynamic_partitions(PARTITIONS_NAME))
    rows = ["| repository | verdict | MRR@10 | previous | hit@10 | previous |", "|---|---|---|---|---|---|"]
    all_drops: list[str] = []
    metadata: dict[str, Any] = {"scope": MetadataValue.text(scope or "all repositories")}
    for partition in partitions:
        verdict, drops, figures = _compare(context, partition)
        all_drops += [f"{partition}: {d}" for d in drops]
        cells = [
            figures.get(k) for k in ("mrr_at_10", "previous_mrr_at_10", "hit_at_10", "previous_hit_at_10")
        ]
        rows.append(
            f"| {partition} | {verdict} | " + " | ".join("" if c is None else str(c) for c in cells) + " |"
        )
        if scope:
            for key, value in figures.items():
                if key in ("queries", *DROP_METRICS) or key.startswith("previous_"):
                    if isinstance(value, int | float) and not isinstance(value, bool):
                        metadata[key] = value
            metadata["verdict"] = MetadataValue.text(verdict)
    metadata["repositories"] = MetadataValue.md("\n".join(rows))
    metadata["drops"] = MetadataValue.md("\n".join(f"- {d}" for d in all_drops) or "none")
    return AssetCheckResult(passed=not all_drops, severity=AssetCheckSeverity.WARN, metadata=metadata)


ASSETS = [retrieval_quality]
CHECKS = [quality_not_dropped]
JOBS: list = []
SENSORS: list = []
SCHEDULES: list = []
