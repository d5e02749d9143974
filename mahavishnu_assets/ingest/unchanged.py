"""The one check of whether a re-ingest has anything to read, and the proof a run leaves for the next one.

A run of a clean git work tree that leaves HEAD's content stored (it found every file as stored, or the tree
was still as found and clean at the end) records an unchanged key: HEAD, the root, the settings that decide
chunks and skips, and the embedding space. While git reports that HEAD with a clean tree, a later run only
checks the key (`git status` and one query) and records itself with the counts of the run that proved it.
Files are compared one by one otherwise: a stored file whose stat is as recorded is not read again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from mahavishnu_assets.ingest import store
from mahavishnu_assets.ingest.discover import (
    BAD_PATH,
    EMBEDDING_REJECTED,
    IGNORED,
    TOO_LARGE,
    Candidate,
    Discovery,
    FileStat,
    git_clean_head,
    still_as_found,
)
from mahavishnu_assets.ingest.embed import Embedder
from mahavishnu_assets.ingest.result import IngestResult
from mahavishnu_assets.ingest.space import resolve_space
from mahavishnu_assets.settings import Settings

# Skips decided from the path, its size and the settings alone: git sees every change that could alter them.
_GIT_VISIBLE_SKIPS = frozenset({IGNORED, TOO_LARGE, BAD_PATH})


def ingest_config(settings: Settings) -> str:
    """What decides a file's chunks and skip verdict from its bytes; a change re-chunks every file."""
    from mahavishnu_assets.ingest.chunk import CHUNKER_VERSION

    ing = settings.ingest
    facts = {
        "chunker": CHUNKER_VERSION,
        "chunk_lines": ing.chunk_lines,
        "chunk_lines_overlap": ing.chunk_lines_overlap,
        "max_chunk_chars": ing.max_chunk_chars,
        "max_line_chars": ing.max_line_chars,
        "detect_secrets": ing.detect_secrets,
        "secret_plugins": ing.secret_plugins,
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:16]


def unchanged_key(settings: Settings, config: str, root: Path, head: str, space_id: int) -> str:
    """What a clean work tree at `head` must match for a re-ingest to have nothing to read."""
    ing = settings.ingest
    facts = {
        "root": str(root),
        "config": config,
        "space_id": space_id,
        "max_file_bytes": ing.max_file_bytes,
        "exclude_patterns": list(ing.exclude_patterns),
        "head": head,
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()


def same_stat(known: store.KnownFile | store.KnownSkip, stat: FileStat) -> bool:
    """Whether a stored file's recorded stat is the file's stat now (a racy one was not recorded)."""
    return (
        known.mtime_ns is not None
        and known.size == stat.size
        and known.mtime_ns == stat.mtime_ns
        and known.ctime_ns == stat.ctime_ns
        and known.inode == stat.inode
    )


def git_proves_unchanged(found: Discovery, clean_head: str, skipped: dict[str, int]) -> bool:
    """Whether git alone will see any later change of what a run found: a clean tree at the same HEAD, no
    symlinks (their targets may change unseen), no skips that depend on more than the path, and no refused
    chunk (the server's verdict, not the file's: it is retried without git)."""
    return (
        found.commit == clean_head
        and all(c.real_path is None for c in found.candidates)
        and set(found.skipped.values()) <= _GIT_VISIBLE_SKIPS
        and EMBEDDING_REJECTED not in skipped
    )


class UnchangedCheck:
    """The unchanged check of one run of one repository: git's answer at its start, the key it compares, and
    the check that the tree stayed as found while the run read it."""

    def __init__(self, settings: Settings, root: Path) -> None:
        self.settings = settings
        self.root = root
        self.config = ingest_config(settings)
        self.head: str | None = None  # HEAD when git saw a clean work tree at the start
        self._tree_check: asyncio.Future[bool] | None = None

    async def ask_git(self) -> str | None:
        """HEAD if git sees a clean work tree at `root` (git checks it in C, faster than we can stat it)."""
        self.head = await asyncio.to_thread(git_clean_head, self.root)
        return self.head

    async def answer(
        self, conn: Any, embedder: Embedder, repo_name: str, result: IngestResult, started: float
    ) -> bool:
        """Finish `result` without reading anything when the last run proved this clean HEAD unchanged."""
        if self.head is None:
            return False
        row = await store.unchanged_state(conn, repo_name)
        if (
            row is None
            or row["unchanged_key"] is None
            or row["status"] != "succeeded"
            or not isinstance(row["stats"], dict)
            or row["root_path"] != str(self.root)
        ):
            return False
        key, space_id = await resolve_space(conn, embedder)
        if row["unchanged_key"] != unchanged_key(self.settings, self.config, self.root, self.head, space_id):
            return False
        result.carry_unchanged(
            row["stats"], self.head, key.describe(), key.provider, time.perf_counter() - started
        )
        result.run_id = await store.record_unchanged_run(
            conn, int(row["id"]), self.head, space_id, json.dumps(result.to_dict())
        )
        return True

    def check_tree(self, found: Discovery, started_ns: int) -> None:
        """Start checking that the tree is still as found, once every file is read: it then runs while the last
        batches are embedded and written."""
        if self.head is not None and self._tree_check is None:
            self._tree_check = asyncio.ensure_future(
                asyncio.to_thread(still_as_found, self.root, found, self.head, started_ns)
            )

    def cancel(self) -> None:
        if self._tree_check is not None:
            self._tree_check.cancel()

    async def proof(
        self, found: Discovery, skipped: dict[str, int], untouched: bool, space_id: int, started_ns: int
    ) -> str | None:
        """The key a finished run records: set when what is stored is HEAD's content (nothing was read or
        removed, or the tree is still as found and clean at that HEAD) and git would see any change."""
        head = self.head
        if head is None or not git_proves_unchanged(found, head, skipped):
            self.cancel()
            return None
        if not untouched:
            if self._tree_check is None:
                self.check_tree(found, started_ns)
            assert self._tree_check is not None
            if not await self._tree_check:
                return None
        return unchanged_key(self.settings, self.config, self.root, head, space_id)


def files_to_read(
    found: Discovery,
    known_files: dict[str, store.KnownFile],
    known_skips: dict[str, store.KnownSkip],
    *,
    config: str,
    space_id: int,
    skipped: Counter[str],
) -> tuple[list[Candidate], int]:
    """The found files whose stored rows may be stale, and how many are stored as they are now. A skip stored
    with the same stat is counted into `skipped` again (a refused chunk only for the same space)."""
    to_read: list[Candidate] = []
    unchanged = 0
    for candidate in found.candidates:
        kf = known_files.get(candidate.path)
        if kf is not None and kf.config == config and same_stat(kf, candidate.stat):
            unchanged += 1
            continue
        ks = known_skips.get(candidate.path)
        if (
            ks is not None
            and ks.config == config
            and same_stat(ks, candidate.stat)
            and (ks.reason != EMBEDDING_REJECTED or ks.space_id == space_id)
        ):
            skipped[ks.reason] += 1
            continue
        to_read.append(candidate)
    return to_read, unchanged
