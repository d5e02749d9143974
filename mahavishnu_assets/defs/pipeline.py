"""The main job: schema, one repository's ingestion and embeddings, the ANN index, then retrieval quality, with
every check."""

from dagster import AssetSelection, define_asset_job

from mahavishnu_assets.defs.index import ann_index
from mahavishnu_assets.defs.ingestion import embedded_chunks, repository_ingestion
from mahavishnu_assets.defs.quality import retrieval_quality
from mahavishnu_assets.defs.schema import pgvector_schema

MAIN_JOB_NAME = "memory_refresh"

memory_refresh = define_asset_job(
    MAIN_JOB_NAME,
    selection=AssetSelection.assets(
        pgvector_schema, repository_ingestion, embedded_chunks, ann_index, retrieval_quality
    ),
    description="Keep one repository's memory fresh end to end: migrate, ingest, embed, build or re-tune the "
    "ANN index, then measure retrieval quality. Run with the repository as partition key.",
    tags={"mahavishnu/kind": "refresh"},
)

ASSETS: list = []
CHECKS: list = []
JOBS = [memory_refresh]
SENSORS: list = []
SCHEDULES: list = []
