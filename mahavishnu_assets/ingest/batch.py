"""A batch of files on its way through an ingest: what reading found, then the vectors embedding added."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from mahavishnu_assets.ingest import store
from mahavishnu_assets.ingest.discover import UNREADABLE
from mahavishnu_assets.ingest.reader import Outcome


@dataclass
class Batch:
    """The outcomes of reading some files, as rows to write, with the counts they add to the run's report."""

    files: list[store.NewFile] = field(default_factory=list)
    skips: list[store.NewSkip] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)
    stat_updates: list[tuple[str, int | None, int | None, int | None]] = field(default_factory=list)
    files_read: int = 0
    added: int = 0
    modified: int = 0
    unchanged: int = 0
    skip_reasons: Counter[str] = field(default_factory=Counter)
    chunk_count: int = 0  # kept as files are added: the reader checks it after every file
    # Filled by the embedding stage.
    vectors: dict[bytes, Any] = field(default_factory=dict)
    rejected: set[bytes] = field(default_factory=set)
    mine: set[bytes] = field(default_factory=set)  # hashes this batch embedded itself
    owned: dict[bytes, asyncio.Future[Any]] = field(default_factory=dict)  # in-flight entries it created
    computed: int = 0
    # Contents the servers failed to embed at the last try (the batch is set aside, then tried again).
    unavailable: set[bytes] = field(default_factory=set)

    def add(self, outcome: Outcome, stored_paths: set[str] | dict[str, Any]) -> None:
        """Take one file's outcome; `stored_paths` tells a modified file from an added one."""
        self.files_read += 1
        mtime, ctime, inode = outcome.stat
        if outcome.kind == "skip":
            assert outcome.reason is not None
            self.skip_reasons[outcome.reason] += 1
            if outcome.reason == UNREADABLE:
                self.remove.append(outcome.path)  # not remembered: tried again next run
            else:
                self.skips.append(
                    store.NewSkip(outcome.path, outcome.reason, outcome.size, mtime, ctime, inode)
                )
        elif outcome.kind == "same":
            self.unchanged += 1
            self.stat_updates.append((outcome.path, mtime, ctime, inode))
        else:
            assert outcome.file is not None
            self.files.append(outcome.file)
            self.chunk_count += len(outcome.file.chunks)
            if outcome.path in stored_paths:
                self.modified += 1
            else:
                self.added += 1

    def needed(self) -> dict[bytes, str]:
        """The text each chunk of the batch's files embeds (context header + content), by its hash."""
        out: dict[bytes, str] = {}
        for f in self.files:
            for c in f.chunks:
                out.setdefault(c.content_hash, c.document)
        return out

    def split_ready(self, stored_paths: set[str] | dict[str, Any]) -> Batch | None:
        """Split off what can be written now: the files whose every chunk has a vector (or a refusal) and the
        rows that need none. This batch keeps only the files lacking a vector (`unavailable`), to be embedded
        again later; None when nothing is ready."""
        waiting = [f for f in self.files if any(c.content_hash in self.unavailable for c in f.chunks)]
        ready_files = [f for f in self.files if f not in waiting]
        if not ready_files and not (
            self.skips or self.remove or self.stat_updates or self.files_read > len(waiting)
        ):
            return None
        ready_hashes = {c.content_hash for f in ready_files for c in f.chunks}
        waiting_added = sum(1 for f in waiting if f.path not in stored_paths)
        ready = Batch(
            files=ready_files,
            skips=self.skips,
            remove=self.remove,
            stat_updates=self.stat_updates,
            files_read=self.files_read - len(waiting),
            added=self.added - waiting_added,
            modified=self.modified - (len(waiting) - waiting_added),
            unchanged=self.unchanged,
            skip_reasons=self.skip_reasons,
            chunk_count=sum(len(f.chunks) for f in ready_files),
            vectors={h: v for h, v in self.vectors.items() if h in ready_hashes},
            rejected=set(self.rejected),
            mine=self.mine & ready_hashes,
            owned={h: f for h, f in self.owned.items() if h in ready_hashes},
            computed=self.computed,
        )
        self.files, self.skips, self.remove, self.stat_updates = waiting, [], [], []
        self.files_read, self.added, self.modified = len(waiting), waiting_added, len(waiting) - waiting_added
        self.unchanged, self.skip_reasons, self.computed = 0, Counter(), 0
        self.chunk_count = sum(len(f.chunks) for f in waiting)
        self.mine -= ready_hashes
        self.owned = {h: f for h, f in self.owned.items() if h not in ready_hashes}
        return ready
