"""The pgvector schema asset and its check: migrations applied, live schema matching them."""

# No `from __future__ import annotations`: Dagster inspects the real type hints of asset functions.

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)

from mahavishnu_assets.database.migrations import load_migrations, migrate_up, verify_schema
from mahavishnu_assets.defs.resources import PostgresResource

SCHEMA_MATCHES_MIGRATIONS = "schema_matches_migrations"


@asset(group_name="schema", description="PostgreSQL + pgvector schema, from the numbered migrations.")
async def pgvector_schema(context: AssetExecutionContext, postgres: PostgresResource) -> MaterializeResult:
    db = postgres.db
    report = await migrate_up(db.target)
    if report.applied:
        await db.refresh_codecs()
        context.log.info("Applied migrations %s", report.applied)
    async with db.connection() as conn:
        pg_version = await conn.fetchval("SHOW server_version")
        vector_version = await conn.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
    return MaterializeResult(
        metadata={
            "schema_version": MetadataValue.int(report.version),
            "applied_now": MetadataValue.int(len(report.applied)),
            "postgres_version": MetadataValue.text(str(pg_version)),
            "pgvector_version": MetadataValue.text(str(vector_version)),
            "database": MetadataValue.text(db.target.kind),
        }
    )


@asset_check(  # type: ignore[arg-type]  # Dagster runs async checks; its stubs say sync
    asset=pgvector_schema,
    name=SCHEMA_MATCHES_MIGRATIONS,
    blocking=True,
    description="Every migration is applied with its recorded checksum and nobody changed the schema by hand.",
)
async def schema_matches_migrations(postgres: PostgresResource) -> AssetCheckResult:
    async with postgres.db.connection() as conn:
        problems = await verify_schema(conn)
    return AssetCheckResult(
        passed=not problems,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "problems": MetadataValue.md("\n".join(f"- {p}" for p in problems) or "none"),
            "migrations": MetadataValue.int(len(load_migrations())),
        },
    )


ASSETS = [pgvector_schema]
CHECKS = [schema_matches_migrations]
JOBS: list = []
SENSORS: list = []
SCHEDULES: list = []
