"""Incremental ingest of one repository: discover -> read and chunk -> embed -> load, as overlapping stages.

A reader thread reads, classifies and chunks changed files into batches; embedding workers (bounded) fetch
vectors for contents the cache lacks; one writer replaces each batch in one transaction. So the database work
and the chunking overlap embedding, and a crash between batches leaves a consistent database that the next
run completes: files whose stored hash matches are not touched again.

Unchanged files are recognised without reading them (size, mtime, ctime and inode as recorded, and the same
chunking configuration); files whose stat changed are re-hashed, and re-chunked only if their bytes changed.
Only chunk contents missing from the embedding cache of the active space are embedded. A run of a clean git
work tree that leaves HEAD's content stored (it found every file as stored, or the tree was still as found and
clean at the end) records an unchanged key (HEAD, root, settings, space); while git reports that HEAD with a
clean tree, later runs only check the key (`git status` and one query).

Each file and chunk records the commit at which its content was ingested: a commit at which the file held
exactly those lines (`git show COMMIT:PATH`), so rows of unchanged files are never rewritten when HEAD moves;
`repositories.head_commit` is the commit of the last complete ingest.

Embeddings no chunk references any more (old versions of edited or deleted files) are deleted at the end of
an ingest that removed chunks (`ingest.prune_unreferenced_embeddings`, default on): the cache serves reuse
within and across repositories and runs, and never keeps vectors nothing can find.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import itertools
import json
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mahavishnu_assets.database.pool import Database
from mahavishnu_assets.errors import IngestError, MahavishnuError
from mahavishnu_assets.ingest import quick, store
from mahavishnu_assets.ingest.discover import (
    BAD_PATH,
    EMBEDDING_REJECTED,
    IGNORED,
    TOO_LARGE,
    UNREADABLE,
    Candidate,
    Discovery,
    FileStat,
    compile_patterns,
    discover,
    git_clean_head,
    resolve_root,
    still_as_found,
)
from mahavishnu_assets.ingest.embed import Embedder, SpaceKey, ensure_space, make_embedder
from mahavishnu_assets.ingest.names import check_repo_name as check_repo_name
from mahavishnu_assets.ingest.names import default_repo_name as default_repo_name
from mahavishnu_assets.ingest.progress import Progress, ProgressCallback
from mahavishnu_assets.ingest.result import IngestResult as IngestResult
from mahavishnu_assets.settings import Settings

if TYPE_CHECKING:
    from concurrent.futures import Executor

    from mahavishnu_assets.ingest.reader import Outcome, ReadOptions

logger = logging.getLogger(__name__)

FIRST_BATCH_FILES = 8  # a small first batch starts the embedding server early
SLICE_FILES = 24  # files per task handed to a reader worker
TAIL_BATCH_CHUNKS = 300  # batch size once all files are handed to readers


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


# Files written by a run after which the files table is analyzed once (store.refresh_file_statistics). From
# about 300 rows PostgreSQL plans an index lookup for a foreign-key check instead of a scan.
REFRESH_STATISTICS_FILES = 500

# Skips decided from the path, its size and the settings alone: git sees every change that could alter them.
_GIT_VISIBLE_SKIPS = frozenset({IGNORED, TOO_LARGE, BAD_PATH})


def key_facts(settings: Settings, config: str, root: Path, space_id: int) -> dict[str, Any]:
    """What an unchanged key holds besides HEAD (see `quick.unchanged_key`)."""
    ing = settings.ingest
    return {
        "root": str(root),
        "config": config,
        "space_id": space_id,
        "max_file_bytes": ing.max_file_bytes,
        "exclude_patterns": list(ing.exclude_patterns),
    }


def unchanged_key(settings: Settings, config: str, root: Path, head: str, space_id: int) -> str:
    """What a clean work tree at `head` must match for a re-ingest to have nothing to read."""
    return quick.unchanged_key(key_facts(settings, config, root, space_id), head)


def _git_proves_unchanged(found: Discovery, clean_head: str, skipped: dict[str, int]) -> bool:
    """Whether git alone will see any later change of what this run found: a clean tree at the same HEAD, no
    symlinks (their targets may change unseen), no skips that depend on more than the path, and no refused
    chunk (the server's verdict, not the file's: it is retried without git)."""
    return (
        found.commit == clean_head
        and all(c.real_path is None for c in found.candidates)
        and set(found.skipped.values()) <= _GIT_VISIBLE_SKIPS
        and EMBEDDING_REJECTED not in skipped
    )


def _same_stat(known: store.KnownFile | store.KnownSkip, stat: FileStat) -> bool:
    return (
        known.mtime_ns is not None
        and known.size == stat.size
        and known.mtime_ns == stat.mtime_ns
        and known.ctime_ns == stat.ctime_ns
        and known.inode == stat.inode
    )


async def resolve_space(conn: Any, embedder: Embedder) -> tuple[SpaceKey, int]:
    """The embedder's space and its id (created on first use).

    An Ollama model's size is taken from the database when its space is known, so a run with nothing to
    embed sends no request at all; the first real request checks it.
    """
    key = embedder.key
    if not key.dimensions:
        rows = await conn.fetch(
            "SELECT id, dimensions FROM mahavishnu.embedding_spaces WHERE provider = $1 AND model = $2",
            key.provider,
            key.model,
        )
        assume = getattr(embedder, "assume_dimensions", None)
        if len(rows) == 1 and assume is not None:
            assume(int(rows[0]["dimensions"]))
            return embedder.key, int(rows[0]["id"])
        key = await embedder.probe()
    return key, await ensure_space(conn, key)


@dataclass
class _Batch:
    """What the reader produced for a slice of the files to read."""

    files: list[store.NewFile] = field(default_factory=list)
    skips: list[store.NewSkip] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)
    stat_updates: list[tuple[str, int | None, int | None, int | None]] = field(default_factory=list)
    files_read: int = 0
    added: int = 0
    modified: int = 0
    unchanged: int = 0
    skip_reasons: Counter[str] = field(default_factory=Counter)
    # Filled by the embedding stage.
    vectors: dict[bytes, Any] = field(default_factory=dict)
    rejected: set[bytes] = field(default_factory=set)
    mine: set[bytes] = field(default_factory=set)  # hashes this batch embedded itself
    owned: dict[bytes, asyncio.Future[Any]] = field(default_factory=dict)  # in-flight entries it created
    computed: int = 0
    # Kept as files are added: the reader checks it after every file.
    chunk_count: int = 0


class Ingest:
    """One ingest run of one repository. Use `ingest_repository()`."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        embedder: Embedder,
        *,
        progress: ProgressCallback | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.embedder = embedder
        self.progress = Progress()
        self._notify = progress
        self._config = ingest_config(settings)
        self._inflight: dict[bytes, asyncio.Future[Any]] = {}
        self._written: set[bytes] = set()
        self._file_statistics_fresh = False

    def _tick(self, phase: str | None = None) -> None:
        if phase:
            self.progress.phase = phase
        if self._notify is not None:
            try:
                self._notify(self.progress)
            except Exception:  # a broken progress display must not break the ingest
                logger.debug("progress callback failed", exc_info=True)

    # -- reader -----------------------------------------------------------------------------------------------
    def _read_options(self) -> ReadOptions:
        from mahavishnu_assets.ingest.chunk import ChunkOptions
        from mahavishnu_assets.ingest.reader import ReadOptions

        ing = self.settings.ingest
        return ReadOptions(
            max_file_bytes=ing.max_file_bytes,
            max_line_chars=ing.max_line_chars,
            detect_secrets=ing.detect_secrets,
            secret_plugins=tuple(ing.secret_plugins) if ing.secret_plugins else None,
            chunk=ChunkOptions(ing.chunk_lines, ing.chunk_lines_overlap, ing.max_chunk_chars),
        )

    def _add(self, batch: _Batch, outcome: Outcome, known: dict[str, store.KnownFile]) -> None:
        batch.files_read += 1
        mtime, ctime, inode = outcome.stat
        if outcome.kind == "skip":
            assert outcome.reason is not None
            batch.skip_reasons[outcome.reason] += 1
            if outcome.reason == UNREADABLE:
                batch.remove.append(outcome.path)  # not remembered: tried again next run
            else:
                batch.skips.append(
                    store.NewSkip(outcome.path, outcome.reason, outcome.size, mtime, ctime, inode)
                )
        elif outcome.kind == "same":
            batch.unchanged += 1
            batch.stat_updates.append((outcome.path, mtime, ctime, inode))
        else:
            assert outcome.file is not None
            batch.files.append(outcome.file)
            batch.chunk_count += len(outcome.file.chunks)
            if outcome.path in known:
                batch.modified += 1
            else:
                batch.added += 1

    # -- embedding ----------------------------------------------------------------------------------------
    async def _embed_texts(self, texts: list[str]) -> list[Any]:
        """float32 vectors (numpy rows, either byte order) or None for refused inputs."""
        return await self.embedder.embed_partial(texts)

    async def _embed_batch(self, batch: _Batch, space_id: int) -> None:
        needed: dict[bytes, str] = {}
        for f in batch.files:
            for c in f.chunks:
                needed.setdefault(c.content_hash, c.document)  # header + content: what the hash keys
        if not needed:
            return
        candidates = [h for h in needed if h not in self._written]
        async with self.db.connection() as conn:
            present = await store.existing_embeddings(conn, space_id, candidates)
        mine: list[bytes] = []
        theirs: dict[bytes, asyncio.Future[Any]] = {}
        loop = asyncio.get_running_loop()
        for h in candidates:
            # Written by another batch while we looked in the database: in the cache now.
            if h in present or h in self._written:
                continue
            future = self._inflight.get(h)
            if future is None:
                future = self._inflight[h] = loop.create_future()
                batch.owned[h] = future
                mine.append(h)
            else:
                theirs[h] = future
        if mine:
            try:
                vectors = await self._embed_texts([needed[h] for h in mine])
            except BaseException as exc:
                for h in mine:
                    self._forget(h, batch.owned[h])
                    future = batch.owned[h]
                    if not future.done():
                        future.set_exception(exc if isinstance(exc, Exception) else asyncio.CancelledError())
                        future.exception()  # marked retrieved: the batch's own error is what gets reported
                raise
            vectors = self._wire(vectors)
            for h, vector in zip(mine, vectors, strict=True):
                batch.owned[h].set_result(vector)
                if vector is None:
                    batch.rejected.add(h)
                else:
                    batch.vectors[h] = vector
                    batch.mine.add(h)
            batch.computed = sum(1 for v in vectors if v is not None)
            self.progress.embeddings_computed += batch.computed
        for h, future in theirs.items():
            vector = await future
            if vector is None:
                batch.rejected.add(h)
            else:
                batch.vectors[h] = vector

    @staticmethod
    def _wire(vectors: list[Any]) -> list[Any]:
        """Vectors in pgvector's wire format for the writers' COPY (None stays None)."""
        import numpy as np

        present = [v for v in vectors if v is not None]
        if not present:
            return vectors
        encoded = iter(store.vector_wire(np.asarray(present, dtype=">f4")))
        return [None if v is None else next(encoded) for v in vectors]

    def _forget(self, content_hash: bytes, future: asyncio.Future[Any]) -> None:
        """Drop an in-flight entry, only if it is still the one this batch created (another may have replaced
        it after this batch's vector was written)."""
        if self._inflight.get(content_hash) is future:
            del self._inflight[content_hash]

    # -- writer ---------------------------------------------------------------------------------------------
    async def _write(
        self, conn: Any, batch: _Batch, *, repo_id: int, key: SpaceKey, space_id: int, commit: str | None
    ) -> store.BatchOutcome:
        files, skips = batch.files, list(batch.skips)
        if batch.rejected:
            kept = []
            for f in files:
                if any(c.content_hash in batch.rejected for c in f.chunks):
                    logger.warning("Skipping %s: the embedding server refused one of its chunks", f.path)
                    skips.append(
                        store.NewSkip(
                            f.path, EMBEDDING_REJECTED, f.size, f.mtime_ns, f.ctime_ns, f.inode, space_id
                        )
                    )
                    batch.skip_reasons[EMBEDDING_REJECTED] += 1
                    if f.path in self._known_paths:
                        batch.modified -= 1
                    else:
                        batch.added -= 1
                else:
                    kept.append(f)
            files = kept
        needed = {c.content_hash for f in files for c in f.chunks}
        # Vectors this run already committed are only checked for; the rest are stored first.
        vectors = {h: v for h, v in batch.vectors.items() if h in needed and h not in self._written}
        write = store.BatchWrite(
            files=files, skips=skips, remove=batch.remove, embeddings=vectors, needed=needed
        )
        for _attempt in range(3):
            try:
                outcome = await store.write_batch(
                    conn,
                    repo_id=repo_id,
                    space_id=space_id,
                    dimensions=key.dimensions,
                    commit=commit,
                    config=self._config,
                    batch=write,
                    stat_updates=batch.stat_updates,
                    # Vectors another batch computed may be stored by its writer at this moment.
                    shared=any(h not in batch.mine for h in write.embeddings),
                )
                break
            except store.MissingEmbeddingsError as exc:
                # Pruned by a concurrent ingest between our cache lookup and this write: compute them now.
                contents = {c.content_hash: c.document for f in files for c in f.chunks}
                missing = sorted(exc.hashes)
                fresh = await self._embed_texts([contents[h] for h in missing])
                for h, v in zip(missing, fresh, strict=True):
                    if v is None:
                        raise IngestError(
                            "The embedding server refused a chunk it had embedded before"
                        ) from None
                    write.embeddings[h] = v
                    batch.mine.add(h)
                    batch.computed += 1
        else:
            raise IngestError("Embeddings kept vanishing during the write; is another process pruning them?")
        self._written.update(vectors)
        for h, future in batch.owned.items():
            self._forget(h, future)
        batch.files = files
        return outcome

    # -- backfill ---------------------------------------------------------------------------------------------
    async def _backfill(self, repo_id: int, key: SpaceKey, space_id: int) -> int:
        """Embed stored chunks that have no vector in the active space (a new model, a pruned cache)."""
        total = 0
        page = max(self.settings.ingest.batch_max_chunks, 1)
        while True:
            async with self.db.connection() as conn:
                rows = await store.chunks_missing_embeddings(conn, repo_id, space_id, page)
            if not rows:
                return total
            self._tick("backfill")
            vectors = await self._embed_texts([content for _, content in rows])
            good = {h: v for (h, _), v in zip(rows, vectors, strict=True) if v is not None}
            if len(good) < len(rows):
                raise IngestError(
                    f"The embedding server refused {len(rows) - len(good)} stored chunks of this repository",
                    suggestion="Check the embedding model; re-ingest after fixing it.",
                )
            async with self.db.connection() as conn:
                await store.store_embeddings(conn, space_id, key.dimensions, good, shared=True)
            total += len(good)
            self.progress.embeddings_computed += len(good)
            self._tick()

    # -- the run -----------------------------------------------------------------------------------------------
    async def run(self, path: Path | str, name: str | None = None) -> IngestResult:
        started = time.perf_counter()
        started_ns = time.time_ns()
        ing = self.settings.ingest
        root = resolve_root(path)
        repo_name = check_repo_name(name or default_repo_name(root))
        result = IngestResult(repo=repo_name, commit=None, root_path=str(root))
        if self.embedder.announcement:
            result.warnings.append(self.embedder.announcement)
        self._tick("discover")
        phase = time.perf_counter()
        # Git checks the work tree (in C, with its own racy-timestamp rules) faster than we can stat it.
        clean_head = await asyncio.to_thread(git_clean_head, root)
        if clean_head is not None and await self._unchanged(result, repo_name, root, clean_head, started):
            self._tick("done")
            return result
        found = await asyncio.to_thread(
            discover, root, max_file_bytes=ing.max_file_bytes, exclude=compile_patterns(ing.exclude_patterns)
        )
        result.phases["discover"] = time.perf_counter() - phase
        if len(found.candidates) >= ing.process_min_files and not await self._anything_stored(repo_name):
            # Every file will be read: the reader processes can start loading while the run is set up.
            from mahavishnu_assets.ingest.reader import prestart

            prestart(len(found.candidates), processes=ing.reader_processes, min_files=ing.process_min_files)
        result.commit = found.commit
        result.files_seen = found.files_seen
        skipped: Counter[str] = Counter(found.skipped.values())

        async with self.db.connection() as conn:
            async with conn.transaction():
                repo_id, _old_head, old_space = await store.register_repository(
                    conn, repo_name, str(root), move=name is not None
                )
            await self._lock(conn, repo_name)
            try:
                key, space_id = await resolve_space(conn, self.embedder)
                result.embedding_space = key.describe()
                result.embedder = key.provider
                previous_ok = await conn.fetchval(
                    """SELECT status = 'succeeded' FROM mahavishnu.ingest_runs WHERE repo_id = $1
                       ORDER BY id DESC LIMIT 1""",
                    repo_id,
                )
                run_id = await store.start_run(conn, repo_id, found.commit, space_id)
                result.run_id = run_id
                try:
                    # Batches write chunks with their vectors atomically: after a successful run in this
                    # space no stored chunk lacks one, so the backfill scan is only needed otherwise.
                    complete = bool(previous_ok) and old_space == space_id
                    # The tree's check below needs only the reading done: it runs while the last batches are
                    # embedded and written.
                    tree_check: list[asyncio.Future[bool]] = []

                    def check_tree() -> None:
                        if clean_head:
                            tree_check.append(
                                asyncio.ensure_future(
                                    asyncio.to_thread(still_as_found, root, found, clean_head, started_ns)
                                )
                            )

                    try:
                        untouched = await self._body(
                            conn, result, found, skipped, repo_id, key, space_id, complete, check_tree
                        )
                    except BaseException:
                        for check in tree_check:
                            check.cancel()
                        raise
                    phase = time.perf_counter()
                    first = previous_ok is None
                    # What is stored is HEAD's content (nothing was read or removed, or the tree is still as
                    # found and clean at that HEAD), and git would see any change: later runs may trust git.
                    proof = None
                    if (
                        clean_head
                        and _git_proves_unchanged(found, clean_head, result.skipped)
                        and (
                            untouched
                            or await (
                                tree_check[0]
                                if tree_check
                                else asyncio.to_thread(still_as_found, root, found, clean_head, started_ns)
                            )
                        )
                    ):
                        proof = unchanged_key(self.settings, self._config, root, clean_head, space_id)
                    async with conn.transaction():
                        await store.finish_repository(conn, repo_id, found.commit, space_id, proof)
                    if ing.prune_unreferenced_embeddings and (
                        result.chunks_deleted or (not first and not previous_ok)
                    ):
                        result.embeddings_pruned = await store.prune_unreferenced_embeddings(conn, space_id)
                    result.phases["finish"] = time.perf_counter() - phase
                    result.seconds = time.perf_counter() - started
                    await store.finish_run(conn, run_id, "succeeded", result.to_dict())
                except BaseException as exc:
                    message = exc.message if isinstance(exc, MahavishnuError) else exc.__class__.__name__
                    try:
                        await asyncio.shield(
                            store.finish_run(conn, run_id, "failed", result.to_dict(), message)
                        )
                    except Exception:
                        logger.debug("could not record the failed run", exc_info=True)
                    raise
            finally:
                await conn.execute(
                    "SELECT pg_advisory_unlock($1, $2)", store.INGEST_LOCK, store.lock_key(repo_name)
                )
        self._tick("done")
        return result

    async def _unchanged(
        self, result: IngestResult, repo_name: str, root: Path, head: str, started: float
    ) -> bool:
        """Finish `result` without reading anything when the last run proved this clean HEAD unchanged."""
        async with self.db.connection() as conn:
            row = await store.unchanged_state(conn, repo_name)
            if (
                row is None
                or row["unchanged_key"] is None
                or row["status"] != "succeeded"
                or not isinstance(row["stats"], dict)
                or row["root_path"] != str(root)
            ):
                return False
            key, space_id = await resolve_space(conn, self.embedder)
            if row["unchanged_key"] != unchanged_key(self.settings, self._config, root, head, space_id):
                return False
            result.carry_unchanged(
                row["stats"], head, key.describe(), key.provider, time.perf_counter() - started
            )
            result.run_id = await store.record_unchanged_run(
                conn, int(row["id"]), head, space_id, json.dumps(result.to_dict())
            )
        return True

    async def _anything_stored(self, repo_name: str) -> bool:
        async with self.db.connection() as conn:
            return bool(
                await conn.fetchval(
                    """SELECT EXISTS (SELECT 1 FROM mahavishnu.source_files f
                                      JOIN mahavishnu.repositories r ON r.id = f.repo_id WHERE r.name = $1)""",
                    repo_name,
                )
            )

    async def _lock(self, conn: Any, repo_name: str) -> None:
        deadline = time.monotonic() + self.settings.ingest.lock_timeout_seconds
        announced = False
        while not await conn.fetchval(
            "SELECT pg_try_advisory_lock($1, $2)", store.INGEST_LOCK, store.lock_key(repo_name)
        ):
            if time.monotonic() > deadline:
                raise IngestError(
                    f"Another ingest of {repo_name!r} is still running",
                    suggestion="Wait for it to finish (or raise ingest.lock_timeout_seconds) and run again.",
                )
            if not announced:
                logger.warning("Waiting for another ingest of %s to finish", repo_name)
                announced = True
            await asyncio.sleep(0.2)

    async def _body(
        self,
        conn: Any,
        result: IngestResult,
        found: Any,
        skipped: Counter[str],
        repo_id: int,
        key: SpaceKey,
        space_id: int,
        complete: bool,
        after_reading: Callable[[], None] | None = None,
    ) -> bool:
        phase = time.perf_counter()
        known_files, known_skips = await store.known_state(conn, repo_id)
        self._known_paths = set(known_files)
        present = {c.path for c in found.candidates}
        gone = sorted(p for p in (known_files.keys() | known_skips.keys()) if p not in present)
        to_read: list[Candidate] = []
        for candidate in found.candidates:
            kf = known_files.get(candidate.path)
            if kf is not None and kf.config == self._config and _same_stat(kf, candidate.stat):
                result.files_unchanged += 1
                continue
            ks = known_skips.get(candidate.path)
            if (
                ks is not None
                and ks.config == self._config
                and _same_stat(ks, candidate.stat)
                and (ks.reason != EMBEDDING_REJECTED or ks.space_id == space_id)
            ):
                skipped[ks.reason] += 1
                continue
            to_read.append(candidate)
        result.phases["compare"] = time.perf_counter() - phase
        self.progress.files_total = len(to_read)
        self._tick("ingest")

        phase = time.perf_counter()
        if gone:
            outcome = await store.write_batch(
                conn,
                repo_id=repo_id,
                space_id=space_id,
                dimensions=key.dimensions,
                commit=found.commit,
                config=self._config,
                batch=store.BatchWrite(files=[], skips=[], remove=gone, embeddings={}, needed=set()),
            )
            result.files_deleted += outcome.files_deleted
            result.chunks_deleted += outcome.chunks_deleted
        if to_read:
            await self._pipeline(
                conn,
                result,
                to_read,
                known_files,
                skipped,
                repo_id,
                key,
                space_id,
                found.commit,
                after_reading,
            )
        result.phases["pipeline"] = time.perf_counter() - phase

        phase = time.perf_counter()
        backfilled = 0 if complete else await self._backfill(repo_id, key, space_id)
        result.embeddings_backfilled = backfilled
        result.embeddings_computed += backfilled
        result.phases["backfill_check"] = time.perf_counter() - phase
        result.skipped = dict(skipped)
        result.files_skipped = sum(skipped.values())
        return not to_read and not gone  # nothing was read or removed

    async def _pipeline(
        self,
        conn: Any,
        result: IngestResult,
        to_read: list[Candidate],
        known_files: dict[str, store.KnownFile],
        skipped: Counter[str],
        repo_id: int,
        key: SpaceKey,
        space_id: int,
        commit: str | None,
        after_reading: Callable[[], None] | None = None,
    ) -> None:
        # Imported here: an ingest with nothing to read (the common re-run) never loads multiprocessing.
        from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
        from concurrent.futures.process import BrokenProcessPool

        from mahavishnu_assets.ingest.reader import make_executor, needs_no_parser, read_slice, start_workers

        loop = asyncio.get_running_loop()
        depth = self.settings.ingest.pipeline_depth
        chunked: asyncio.Queue[_Batch | None] = asyncio.Queue(maxsize=depth)
        embedded: asyncio.Queue[_Batch | None] = asyncio.Queue(maxsize=depth)

        ing = self.settings.ingest
        options = self._read_options()
        # Time each stage spent working (embed: summed over parallel workers), for tuning and benchmarks.
        busy: dict[str, float] = {"reader_wait": 0.0, "embed": 0.0, "write": 0.0}
        same_as = {p: k.content_hash for p, k in known_files.items() if k.config == self._config}

        def sliced(files: list[Candidate], first: int) -> list[list[Candidate]]:
            out: list[list[Candidate]] = []
            size = first
            for candidate in files:
                if not out or len(out[-1]) >= size:
                    size = first if not out else SLICE_FILES
                    out.append([])
                out[-1].append(candidate)
            return out

        async def reader() -> None:
            executor, workers = make_executor(
                len(to_read), processes=ing.reader_processes, min_files=ing.process_min_files
            )
            thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mahavishnu-read")
            pooled = isinstance(executor, ProcessPoolExecutor)
            # While worker processes start (they load the code parsers first), a thread reads files that need no
            # parser, so embedding starts at once; what it has not reached when they are up goes to them.
            early: deque[list[Candidate]] = deque()
            if pooled:
                early.extend(sliced([c for c in to_read if needs_no_parser(c.path)], FIRST_BATCH_FILES))
            early_paths = {c.path for part in early for c in part}
            rest = [c for c in to_read if c.path not in early_paths]
            queue: Iterator[list[Candidate]] = iter(
                sliced(rest, FIRST_BATCH_FILES if not early else SLICE_FILES)
            )
            pending: deque[tuple[list[Candidate], dict[str, bytes], asyncio.Future[list[Outcome]]]] = deque()

            def start(
                part: list[Candidate], wanted: dict[str, bytes], on: Executor
            ) -> asyncio.Future[list[Outcome]]:
                return loop.run_in_executor(on, read_slice, part, wanted, options)

            def add(part: list[Candidate], on: Executor) -> None:
                wanted = {c.path: same_as[c.path] for c in part if c.path in same_as}
                pending.append((part, wanted, start(part, wanted, on)))

            exhausted = False

            def submit() -> None:
                nonlocal exhausted
                part = next(queue, None)
                if part is not None:
                    add(part, executor)
                else:
                    exhausted = True

            async def start_pool() -> Executor:
                try:
                    await asyncio.to_thread(start_workers, executor, workers)
                    return executor
                except BrokenProcessPool:
                    logger.warning("Reader processes did not start; reading files in a thread")
                    executor.shutdown(wait=False, cancel_futures=True)
                    return thread

            def add_early() -> None:
                if early:
                    add(early.popleft(), thread)

            add_early()
            add_early()  # one slice at work, one waiting
            pool_ready = asyncio.ensure_future(start_pool()) if pooled else None
            try:
                if pool_ready is None:
                    for _ in range(workers + 1):
                        submit()
                batch, limit = _Batch(), min(FIRST_BATCH_FILES, ing.file_batch_size)
                while pending or pool_ready is not None:
                    if pool_ready is not None and (pool_ready.done() or not pending):
                        executor = await pool_ready
                        pool_ready = None
                        workers = workers if executor is not thread else 1
                        queue = itertools.chain(list(early), queue)
                        early.clear()
                        for _ in range(workers + 1):
                            submit()
                        continue
                    waited = time.perf_counter()
                    try:
                        outcomes = await pending[0][2]
                    except BrokenProcessPool:
                        # A worker died (killed, out of memory, or a __main__ it could not import): finish the
                        # job in a thread rather than fail it.
                        logger.warning("Reader processes failed; reading the remaining files in a thread")
                        executor.shutdown(wait=False, cancel_futures=True)
                        executor = thread
                        for i, (part, wanted, _) in enumerate(pending):
                            pending[i] = (part, wanted, start(part, wanted, thread))
                        continue
                    pending.popleft()
                    busy["reader_wait"] += time.perf_counter() - waited
                    if pool_ready is None:
                        submit()
                    else:
                        add_early()
                    # Once every file is handed out, batches shrink: the last writes after the last
                    # embedding are then short, so little work trails the embedding server.
                    chunk_limit = (
                        min(ing.batch_max_chunks, TAIL_BATCH_CHUNKS) if exhausted else ing.batch_max_chunks
                    )
                    for outcome in outcomes:
                        self._add(batch, outcome, known_files)
                        if (
                            len(batch.files) >= limit
                            or batch.chunk_count >= chunk_limit
                            or batch.files_read >= 4 * ing.file_batch_size
                        ):
                            await chunked.put(batch)
                            batch, limit = _Batch(), ing.file_batch_size
                if after_reading is not None:
                    after_reading()  # every file is read
                if batch.files_read:
                    await chunked.put(batch)
                for _ in range(depth):
                    await chunked.put(None)
            finally:
                for _, _, future in pending:
                    future.cancel()
                if pool_ready is not None:
                    pool_ready.cancel()
                executor.shutdown(wait=False, cancel_futures=True)
                thread.shutdown(wait=False, cancel_futures=True)

        async def embedder_worker() -> None:
            while (batch := await chunked.get()) is not None:
                began = time.perf_counter()
                await self._embed_batch(batch, space_id)
                busy["embed"] += time.perf_counter() - began
                await embedded.put(batch)

        writers = max(1, ing.writer_connections)

        async def embedding() -> None:
            async with asyncio.TaskGroup() as group:
                for _ in range(depth):
                    group.create_task(embedder_worker())
            for _ in range(writers):
                await embedded.put(None)

        async def writer() -> None:
            # Each writer has its own connection: file batches touch disjoint paths, and vectors are merged in
            # content-hash order, so parallel transactions cannot deadlock.
            async with self.db.connection() as wconn:
                await store.accept_wire_vectors(wconn)
                while (batch := await embedded.get()) is not None:
                    began = time.perf_counter()
                    outcome = await self._write(
                        wconn, batch, repo_id=repo_id, key=key, space_id=space_id, commit=commit
                    )
                    busy["write"] += time.perf_counter() - began
                    result.files_read += batch.files_read
                    result.files_added += batch.added
                    result.files_modified += batch.modified
                    result.files_unchanged += batch.unchanged
                    result.files_changed += len(batch.files)
                    result.files_deleted += outcome.files_deleted
                    result.chunks_written += outcome.chunks_written
                    result.chunks_deleted += outcome.chunks_deleted
                    result.embeddings_computed += batch.computed
                    needed = {c.content_hash for f in batch.files for c in f.chunks}
                    result.embeddings_reused += len(needed - batch.mine)
                    skipped.update(batch.skip_reasons)
                    self.progress.files_done += batch.files_read
                    self.progress.chunks_written += outcome.chunks_written
                    await store.update_run(
                        wconn, result.run_id or 0, self.progress.files_total, self.progress.files_done
                    )
                    if result.files_changed >= REFRESH_STATISTICS_FILES and not self._file_statistics_fresh:
                        self._file_statistics_fresh = True
                        await store.refresh_file_statistics(wconn)
                    self._tick()

        # A failing stage cancels the others; the batches already committed stay (each is complete).
        try:
            with collector_for_a_run():
                async with asyncio.TaskGroup() as group:
                    group.create_task(reader(), name="ingest-reader")
                    group.create_task(embedding(), name="ingest-embed")
                    for i in range(writers):
                        group.create_task(writer(), name=f"ingest-writer-{i}")
        except BaseExceptionGroup as failure:
            raise _first_error(failure) from None
        result.phases.update({f"{k}_busy": v for k, v in busy.items()})


_collector_lock = threading.Lock()
_collector_runs = 0
_collector_thresholds = gc.get_threshold()


@contextmanager
def collector_for_a_run() -> Iterator[None]:
    """The cyclic collector tuned for a pipeline run, and restored after it.

    The objects alive when it starts (modules, settings, clients) live as long as the run: frozen out of the
    collector's view, its full passes over the run's many short-lived objects stay short, and a young generation
    ten times the default collects less often (a django first ingest: 0.30-0.36 s -> 0.15-0.18 s of main-process
    time in collections). Runs in one process may overlap (partitions, tests): the first in tunes, the last out
    restores."""
    global _collector_runs, _collector_thresholds
    with _collector_lock:
        if _collector_runs == 0:
            _collector_thresholds = gc.get_threshold()
            gc.freeze()
            gc.set_threshold(10 * _collector_thresholds[0], *_collector_thresholds[1:])
        _collector_runs += 1
    try:
        yield
    finally:
        with _collector_lock:
            _collector_runs -= 1
            if _collector_runs == 0:
                gc.set_threshold(*_collector_thresholds)
                gc.unfreeze()


def _first_error(group: BaseExceptionGroup) -> BaseException:
    """The error that stopped the pipeline (ours first), out of the group a TaskGroup raises."""
    leaves: list[BaseException] = []

    def walk(error: BaseException) -> None:
        if isinstance(error, BaseExceptionGroup):
            for inner in error.exceptions:
                walk(inner)
        else:
            leaves.append(error)

    walk(group)
    for error in leaves:
        if isinstance(error, MahavishnuError):
            return error
    for error in leaves:
        if not isinstance(error, asyncio.CancelledError):
            return error
    return leaves[0] if leaves else group


async def ingest_repository(
    db: Database,
    settings: Settings,
    path: Path | str,
    *,
    name: str | None = None,
    embedder: Embedder | None = None,
    progress: ProgressCallback | None = None,
) -> IngestResult:
    """Bring the database in step with the repository at `path` (registered as `name`)."""
    own = embedder is None
    embedder = embedder or make_embedder(settings)
    try:
        return await Ingest(db, settings, embedder, progress=progress).run(path, name)
    finally:
        if own:
            await embedder.aclose()


async def embed_repository(
    db: Database,
    settings: Settings,
    name: str,
    *,
    embedder: Embedder | None = None,
    progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Give every stored chunk of repository `name` a vector in the active space (after a model change)."""
    started = time.perf_counter()
    own = embedder is None
    embedder = embedder or make_embedder(settings)
    try:
        run = Ingest(db, settings, embedder, progress=progress)
        async with db.connection() as conn:
            repo_id = await conn.fetchval("SELECT id FROM mahavishnu.repositories WHERE name = $1", name)
            if repo_id is None:
                raise IngestError(
                    f"Repository {name!r} has not been ingested",
                    suggestion="Ingest it first (`mahavishnu ingest`).",
                )
            key, space_id = await resolve_space(conn, embedder)
            chunks = await conn.fetchval("SELECT count(*) FROM mahavishnu.chunks WHERE repo_id = $1", repo_id)
        computed = await run._backfill(int(repo_id), key, space_id)
        async with db.connection() as conn:
            await conn.execute(
                "UPDATE mahavishnu.repositories SET space_id = $2 WHERE id = $1", repo_id, space_id
            )
        out: dict[str, Any] = {
            "repo": name,
            "chunks": int(chunks),
            "embeddings_computed": computed,
            "embedding_space": key.describe(),
            "space_id": space_id,
            "seconds": round(time.perf_counter() - started, 3),
        }
        if embedder.announcement:
            out["warnings"] = [embedder.announcement]
        return out
    finally:
        if own:
            await embedder.aclose()
