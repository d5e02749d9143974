"""Progress of an ingest, reported to whoever watches: a CLI progress bar, Dagster's log, nobody."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

logger = logging.getLogger(__name__)


@dataclass
class Progress:
    phase: str = "discover"
    files_total: int = 0  # files that must be read this run
    files_done: int = 0
    chunks_written: int = 0
    embeddings_computed: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def line(self) -> str:
        return (
            f"{self.phase}: {self.files_done}/{self.files_total} files, {self.chunks_written} chunks, "
            f"{self.embeddings_computed} embedded, {self.elapsed:.1f}s"
        )


ProgressCallback = Callable[[Progress], None]


class ProgressReporter:
    """A run's progress and whoever watches it; a failing watcher never fails the run."""

    def __init__(self, callback: ProgressCallback | None = None) -> None:
        self.progress = Progress()
        self._callback = callback

    def tick(self, phase: str | None = None) -> None:
        if phase:
            self.progress.phase = phase
        if self._callback is not None:
            try:
                self._callback(self.progress)
            except Exception:  # a broken progress display must not break the ingest
                logger.debug("progress callback failed", exc_info=True)


class Throttled:
    """Calls `sink` at most every `interval` seconds (and always for a new phase)."""

    def __init__(self, sink: Callable[[Progress], None], interval: float = 1.0) -> None:
        self.sink = sink
        self.interval = interval
        self._last = 0.0
        self._phase = ""

    def __call__(self, progress: Progress) -> None:
        now = time.monotonic()
        if progress.phase != self._phase or now - self._last >= self.interval:
            self._last = now
            self._phase = progress.phase
            self.sink(progress)


class ProgressBar:
    """A tqdm bar of the files to read on a terminal (stderr), with chunks and embeddings beside it; cleared
    at the end."""

    def __init__(self, stream: TextIO | None = None) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=0, unit="file", file=stream or sys.stderr, leave=False, dynamic_ncols=True)

    def __call__(self, progress: Progress) -> None:
        bar = self._bar
        if bar.total != progress.files_total:
            bar.reset(total=progress.files_total)
        bar.set_postfix_str(
            f"{progress.chunks_written} chunks, {progress.embeddings_computed} embedded", refresh=False
        )
        bar.update(progress.files_done - bar.n)
        bar.set_description(progress.phase)  # redraws, also when no file was done since the last call

    def close(self) -> None:
        self._bar.close()
