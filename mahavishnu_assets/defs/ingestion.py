"""Repository ingestion in Dagster: one dynamic partition per repository, assets, checks, sensor, schedule."""

# No `from __future__ import annotations`: Dagster inspects the real type hints of asset functions.

import asyncio
import json
from typing import Any

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetSelection,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    DynamicPartitionsDefinition,
    MaterializeResult,
    MetadataValue,
    RunRequest,
    ScheduleEvaluationContext,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    asset,
    asset_check,
    define_asset_job,
    schedule,
    sensor,
)

from mahavishnu_assets.defs.resources import OllamaResource, PostgresResource
from mahavishnu_assets.defs.schema import pgvector_schema
from mahavishnu_assets.ingest import checks as ingest_checks
from mahavishnu_assets.ingest.pipeline import IngestResult, embed_repository, ingest_repository, resolve_space
from mahavishnu_assets.ingest.progress import Progress, Throttled
from mahavishnu_assets.ingest.registry import current_head, known_repositories, repository_path
from mahavishnu_assets.settings import Settings, load_settings

PARTITIONS_NAME = "repositories"
repositories_partitions = DynamicPartitionsDefinition(name=PARTITIONS_NAME)

# Asset check names (constants: the UI, alerts and tests refer to them).
CHUNKS_HAVE_EMBEDDINGS = "chunks_have_embeddings"
NO_ORPHANS = "no_orphans"
LINE_RANGES_VALID = "line_ranges_valid"

INGEST_JOB_NAME = "ingest_repositories"
SENSOR_NAME = "repository_head_sensor"
SCHEDULE_NAME = "nightly_reingest"
PROGRESS_LOG_SECONDS = 5.0


def _progress_logger(context: AssetExecutionContext) -> Throttled:
    def log(progress: Progress) -> None:
        context.log.info("%s", progress.line())

    return Throttled(log, interval=PROGRESS_LOG_SECONDS)


def _result_metadata(result: IngestResult) -> dict[str, Any]:
    skipped = result.skipped
    table = "\n".join(f"| {reason} | {count} |" for reason, count in sorted(skipped.items()))
    return {
        "repo": MetadataValue.text(result.repo),
        "commit": MetadataValue.text(result.commit or ""),
        "root_path": MetadataValue.path(result.root_path),
        "files_seen": MetadataValue.int(result.files_seen),
        "files_changed": MetadataValue.int(result.files_changed),
        "files_deleted": MetadataValue.int(result.files_deleted),
        "files_skipped": MetadataValue.int(result.files_skipped),
        "skipped": MetadataValue.md("| reason | files |\n|---|---|\n" + table if table else "none"),
        "skipped_json": MetadataValue.json(skipped),
        "chunks_written": MetadataValue.int(result.chunks_written),
        "chunks_deleted": MetadataValue.int(result.chunks_deleted),
        "embeddings_computed": MetadataValue.int(result.embeddings_computed),
        "embeddings_reused": MetadataValue.int(result.embeddings_reused),
        "embedding_space": MetadataValue.text(result.embedding_space),
        "seconds": MetadataValue.float(round(result.seconds, 3)),
        "warnings": MetadataValue.md("\n".join(f"- {w}" for w in result.warnings) or "none"),
    }


@asset(
    partitions_def=repositories_partitions,
    deps=[pgvector_schema],
    group_name="ingestion",
    description="A repository's files and chunks in PostgreSQL, in step with its work tree (incremental).",
)
async def repository_ingestion(
    context: AssetExecutionContext, postgres: PostgresResource, ollama: OllamaResource
) -> MaterializeResult:
    name = context.partition_key
    settings = postgres.settings
    async with postgres.db.connection() as conn:
        path, configured = await repository_path(conn, settings, name)
    embedder = ollama.embedder(settings)
    try:
        if embedder.announcement:
            context.log.warning("%s", embedder.announcement)
        context.log.info("Ingesting %s from %s", name, path)
        result = await ingest_repository(
            postgres.db, settings, path, name=name, embedder=embedder, progress=_progress_logger(context)
        )
    finally:
        await embedder.aclose()
    context.log.info(
        "%s: %d files changed, %d deleted, %d skipped, %d chunks written, %d embedded in %.1fs",
        name,
        result.files_changed,
        result.files_deleted,
        result.files_skipped,
        result.chunks_written,
        result.embeddings_computed,
        result.seconds,
    )
    return MaterializeResult(metadata=_result_metadata(result))


@asset(
    partitions_def=repositories_partitions,
    deps=[repository_ingestion],
    group_name="ingestion",
    description="Every chunk of the repository has a vector in the active embedding space "
    "(backfills after a model change).",
)
async def embedded_chunks(
    context: AssetExecutionContext, postgres: PostgresResource, ollama: OllamaResource
) -> MaterializeResult:
    name = context.partition_key
    embedder = ollama.embedder(postgres.settings)
    try:
        if embedder.announcement:
            context.log.warning("%s", embedder.announcement)
        outcome = await embed_repository(
            postgres.db, postgres.settings, name, embedder=embedder, progress=_progress_logger(context)
        )
    finally:
        await embedder.aclose()
    context.log.info(
        "%s: %d chunks, %d embedded now", name, outcome["chunks"], outcome["embeddings_computed"]
    )
    return MaterializeResult(
        metadata={
            "repo": MetadataValue.text(name),
            "chunks": MetadataValue.int(outcome["chunks"]),
            "embeddings_computed": MetadataValue.int(outcome["embeddings_computed"]),
            "embedding_space": MetadataValue.text(outcome["embedding_space"]),
            "seconds": MetadataValue.float(outcome["seconds"]),
        }
    )


def _scope(context: AssetCheckExecutionContext) -> str | None:
    """The repository of the run's partition; a checks-only run (no partition) checks every repository.

    The checks are not partitioned themselves: Dagster cannot run partitioned checks without their asset.
    """
    return context.run.tags.get("dagster/partition")


def _check_result(
    outcome: ingest_checks.CheckOutcome, severity: AssetCheckSeverity, scope: str | None
) -> AssetCheckResult:
    metadata: dict[str, Any] = {k: MetadataValue.int(v) for k, v in outcome.counts.items()}
    metadata["scope"] = MetadataValue.text(scope or "all repositories")
    metadata["examples"] = MetadataValue.md("\n".join(f"- `{e}`" for e in outcome.examples) or "none")
    return AssetCheckResult(passed=outcome.passed, severity=severity, metadata=metadata)


@asset_check(  # type: ignore[arg-type]  # Dagster runs async checks; its stubs say sync
    asset=embedded_chunks,
    name=CHUNKS_HAVE_EMBEDDINGS,
    blocking=True,
    description="Every chunk of the repository has an embedding of the active space, of its dimensions.",
)
async def chunks_have_embeddings(
    context: AssetCheckExecutionContext, postgres: PostgresResource, ollama: OllamaResource
) -> AssetCheckResult:
    embedder = ollama.embedder(postgres.settings)
    try:
        async with postgres.db.connection() as conn:
            _, space_id = await resolve_space(conn, embedder)
            outcome = await ingest_checks.embeddings_complete(conn, _scope(context), space_id)
    finally:
        await embedder.aclose()
    return _check_result(outcome, AssetCheckSeverity.ERROR, _scope(context))


@asset_check(  # type: ignore[arg-type]  # Dagster runs async checks; its stubs say sync
    asset=repository_ingestion,
    name=NO_ORPHANS,
    blocking=True,
    description="Chunks agree with their files; no path is both stored and skipped; chunk indexes have no gaps.",
)
async def no_orphans(context: AssetCheckExecutionContext, postgres: PostgresResource) -> AssetCheckResult:
    async with postgres.db.connection() as conn:
        outcome = await ingest_checks.no_orphans(conn, _scope(context))
    return _check_result(outcome, AssetCheckSeverity.ERROR, _scope(context))


@asset_check(  # type: ignore[arg-type]  # Dagster runs async checks; its stubs say sync
    asset=repository_ingestion,
    name=LINE_RANGES_VALID,
    blocking=True,
    description="Each chunk's lines lie within its file and its content holds exactly those lines.",
)
async def line_ranges_valid(
    context: AssetCheckExecutionContext, postgres: PostgresResource
) -> AssetCheckResult:
    async with postgres.db.connection() as conn:
        outcome = await ingest_checks.line_ranges_valid(conn, _scope(context))
    return _check_result(outcome, AssetCheckSeverity.ERROR, _scope(context))


# By key: defs/quality.py builds on this module's assets (importing it here would be circular).
RETRIEVAL_QUALITY_KEY = "retrieval_quality"

ingest_job = define_asset_job(
    INGEST_JOB_NAME,
    selection=AssetSelection.assets(repository_ingestion, embedded_chunks, RETRIEVAL_QUALITY_KEY),
    description="Ingest repositories, make sure all their chunks are embedded, then measure retrieval quality.",
)


# -- sensor and schedule: plain asyncio inside (they run outside any asset step) ------------------------------
async def _repository_heads(settings: Settings) -> dict[str, dict[str, Any]]:
    """Each known repository's path, current HEAD and last ingested commit."""
    from mahavishnu_assets.database.pool import connect
    from mahavishnu_assets.database.server import ensure_database, resolve_target

    target = await asyncio.to_thread(resolve_target, settings)
    await ensure_database(target)
    conn = await connect(target)
    try:
        exists = await conn.fetchval("SELECT to_regclass('mahavishnu.repositories') IS NOT NULL")
        repos = await known_repositories(conn if exists else None, settings)
    finally:
        await conn.close()
    out: dict[str, dict[str, Any]] = {}
    for name, repo in repos.items():
        out[name] = {
            "path": str(repo.path),
            "head": await current_head(repo.path),
            "ingested": repo.ingested_commit,
        }
    return out


@sensor(
    name=SENSOR_NAME,
    target=ingest_job,
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.STOPPED,
    description="Adds a partition for every repository in settings or the database, and requests an ingest "
    "when a repository's HEAD moved.",
)
def repository_head_sensor(context: SensorEvaluationContext) -> SensorResult | SkipReason:
    settings = load_settings()
    heads = asyncio.run(_repository_heads(settings))
    existing = set(context.instance.get_dynamic_partitions(PARTITIONS_NAME))
    new = sorted(set(heads) - existing)
    cursor: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    requests = []
    for name in sorted(heads):
        head = heads[name]["head"]
        if head is None:
            continue  # not a git work tree (or gone): the nightly schedule covers it
        if head == heads[name]["ingested"] or cursor.get(name) == head:
            continue
        cursor[name] = head
        requests.append(
            RunRequest(
                # The move from what is ingested to the new HEAD: a repeated tick dedups, a later return to
                # an older commit is a new move and runs again.
                run_key=f"{name}@{head}<-{heads[name]['ingested'] or 'none'}",
                partition_key=name,
                tags={"mahavishnu/repository": name, "mahavishnu/head": head},
            )
        )
    if not new and not requests:
        return SkipReason(f"{len(heads)} repositories, none new and no HEAD moved")
    context.log.info("New repositories: %s; HEAD moved: %s", new, [r.partition_key for r in requests])
    return SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[repositories_partitions.build_add_request(new)] if new else [],
        cursor=json.dumps(cursor, sort_keys=True),
    )


def _nightly_cron() -> str:
    try:
        return load_settings().ingest.nightly_cron
    except Exception:  # bad settings must not stop the code location from loading
        return "0 3 * * *"


@schedule(
    name=SCHEDULE_NAME,
    cron_schedule=_nightly_cron(),
    target=ingest_job,
    default_status=DefaultScheduleStatus.STOPPED,
    description="Re-ingests every repository each night (catches plain folders and anything a sensor missed).",
)
def nightly_reingest(context: ScheduleEvaluationContext) -> list[RunRequest] | SkipReason:
    names = sorted(context.instance.get_dynamic_partitions(PARTITIONS_NAME))
    if not names:
        return SkipReason("No repository partitions yet")
    stamp = (
        context.scheduled_execution_time.strftime("%Y-%m-%dT%H:%M")
        if context.scheduled_execution_time
        else "now"
    )
    return [
        RunRequest(
            run_key=f"nightly-{stamp}-{name}", partition_key=name, tags={"mahavishnu/repository": name}
        )
        for name in names
    ]


ASSETS = [repository_ingestion, embedded_chunks]
CHECKS = [chunks_have_embeddings, no_orphans, line_ranges_valid]
JOBS = [ingest_job]
SENSORS = [repository_head_sensor]
SCHEDULES = [nightly_reingest]
RESOURCES = {"ollama": OllamaResource()}
