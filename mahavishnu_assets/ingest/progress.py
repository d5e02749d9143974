"""Progress of an ingest, reported to whoever watches: a CLI progress bar, Dagster's log, nobody."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO


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
    """A one-line bar redrawn on a terminal (stderr), cleared at the end."""

    def __init__(self, stream: TextIO | None = None, width: int = 28) -> None:
        self.stream = stream or sys.stderr
        self.width = width
        self._drawn = False

    def __call__(self, progress: Progress) -> None:
        total = max(progress.files_total, 1)
        done = min(progress.files_done, total)
        filled = int(self.width * done / total)
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(f"\r[{bar}] {progress.line()}\x1b[K")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._drawn = False
