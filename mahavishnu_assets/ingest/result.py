"""What an ingest reports (`mahavishnu ingest --json`), and the report of a run that found nothing to do."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# Counts an unchanged run repeats from the run that proved the repository unchanged (every other file is
# unchanged: the proving run may have read them all, as a first ingest does).
CARRIED = ("files_seen", "files_skipped", "skipped")


@dataclass
class IngestResult:
    """The counts of INTERFACE.md (`mahavishnu ingest --json`) plus details."""

    repo: str
    commit: str | None
    files_seen: int = 0
    files_changed: int = 0
    files_deleted: int = 0
    files_skipped: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    chunks_written: int = 0
    chunks_deleted: int = 0
    embeddings_computed: int = 0
    embeddings_reused: int = 0
    seconds: float = 0.0
    root_path: str = ""
    files_added: int = 0
    files_modified: int = 0
    files_unchanged: int = 0
    files_read: int = 0
    embeddings_backfilled: int = 0
    embeddings_pruned: int = 0
    embedding_space: str = ""
    embedder: str = ""
    warnings: list[str] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)
    run_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["skipped"] = dict(sorted(self.skipped.items()))
        out["seconds"] = round(self.seconds, 3)
        out["phases"] = {k: round(v, 3) for k, v in self.phases.items()}
        return out

    def carry_unchanged(
        self, stats: dict[str, Any], head: str, space: str, provider: str, seconds: float
    ) -> None:
        """Fill in a run that found the repository as the run recorded in `stats` left it, at `head`."""
        for name in CARRIED:
            setattr(self, name, stats.get(name, getattr(self, name)))
        self.files_unchanged = self.files_seen - self.files_skipped
        self.commit = head
        self.embedding_space = space
        self.embedder = provider
        self.phases["unchanged_check"] = seconds
        self.seconds = seconds
