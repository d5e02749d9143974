"""What the stages of one ingest run share once the repository is registered and locked."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from mahavishnu_assets.database.pool import Database
from mahavishnu_assets.ingest import store
from mahavishnu_assets.ingest.embed import Embedder, SpaceKey
from mahavishnu_assets.ingest.progress import ProgressReporter
from mahavishnu_assets.ingest.result import IngestResult
from mahavishnu_assets.settings import Settings


@dataclass
class RunContext:
    """One run's target (repository, space, commit), what was stored before it, and its running totals."""

    db: Database
    settings: Settings
    embedder: Embedder
    reporter: ProgressReporter
    result: IngestResult
    skipped: Counter[str]  # skip reasons of every file seen, complete once the last batch is written
    config: str  # `unchanged.ingest_config` of the settings
    repo_id: int
    key: SpaceKey
    space_id: int
    commit: str | None
    known_files: dict[str, store.KnownFile] = field(default_factory=dict)
    # Set once the files table was analyzed during this run (see `stages.REFRESH_STATISTICS_FILES`).
    statistics_fresh: bool = False
