"""Incremental ingest of one repository: discover -> compare with what is stored -> read, embed and write.

A run first asks the unchanged check (`unchanged.py`): a clean git work tree at a HEAD a run proved stored is
answered from git and one query. Otherwise the repository's files are listed, each compared with its stored
row (stat as recorded and the same chunking configuration: not read), and the rest go through the overlapping
stages (`stages.py`): read and chunk, embed what the cache lacks, write each batch in one transaction. A crash
between batches leaves a consistent database that the next run completes: files whose stored hash matches are
not touched again.

Each file and chunk records the commit at which its content was ingested: a commit at which the file held
exactly those lines (`git show COMMIT:PATH`), so rows of unchanged files are never rewritten when HEAD moves;
`repositories.head_commit` is the commit of the last complete ingest.

Embeddings no chunk references any more (old versions of edited or deleted files) are deleted at the end of
an ingest that removed chunks (`ingest.prune_unreferenced_embeddings`, default on): the cache serves reuse
within and across repositories and runs, and never keeps vectors nothing can find.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mahavishnu_assets import telemetry
from mahavishnu_assets.database.pool import Database
from mahavishnu_assets.errors import IngestError, MahavishnuError
from mahavishnu_assets.ingest import store
from mahavishnu_assets.ingest.chunk import ChunkOptions
from mahavishnu_assets.ingest.discover import Discovery, compile_patterns, discover, resolve_root
from mahavishnu_assets.ingest.embed import Embedder, SpaceKey, make_embedder
from mahavishnu_assets.ingest.names import check_repo_name, default_repo_name
from mahavishnu_assets.ingest.progress import ProgressCallback, ProgressReporter
from mahavishnu_assets.ingest.read_scheduler import ReadScheduler
from mahavishnu_assets.ingest.reader import ReadOptions
from mahavishnu_assets.ingest.result import IngestResult as IngestResult
from mahavishnu_assets.ingest.run_context import RunContext
from mahavishnu_assets.ingest.space import resolve_space as resolve_space
from mahavishnu_assets.ingest.stages import run_stages, write_rows
from mahavishnu_assets.ingest.unchanged import UnchangedCheck, files_to_read
from mahavishnu_assets.settings import Settings

logger = logging.getLogger(__name__)

LOCK_POLL_SECONDS = 0.2


class IngestRun:
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
        self.reporter = ProgressReporter(progress)
        self._scheduler: ReadScheduler | None = None

    async def run(self, path: Path | str, name: str | None = None) -> IngestResult:
        started = time.perf_counter()
        started_ns = time.time_ns()
        ing = self.settings.ingest
        root = resolve_root(path)
        repo_name = check_repo_name(name or default_repo_name(root))
        result = IngestResult(repo=repo_name, commit=None, root_path=str(root))
        if self.embedder.announcement:
            result.warnings.append(self.embedder.announcement)
        self.reporter.tick("discover")
        phase = time.perf_counter()
        unchanged = UnchangedCheck(self.settings, root)
        if await unchanged.ask_git() is not None:
            async with self.db.connection() as conn:
                if await unchanged.answer(conn, self.embedder, repo_name, result, started):
                    self.reporter.tick("done")
                    return result
        found = await asyncio.to_thread(
            discover, root, max_file_bytes=ing.max_file_bytes, exclude=compile_patterns(ing.exclude_patterns)
        )
        result.phases["discover"] = time.perf_counter() - phase
        try:
            if len(found.candidates) >= ing.process_min_files and not await self._anything_stored(repo_name):
                # Every file will be read: the reader processes can start loading while the run is set up.
                self._scheduler = self._new_scheduler(len(found.candidates))
                self._scheduler.start()
            await self._registered(result, found, unchanged, name, started, started_ns)
        finally:
            if self._scheduler is not None:
                self._scheduler.close()
        self.reporter.tick("done")
        return result

    async def _registered(
        self,
        result: IngestResult,
        found: Discovery,
        unchanged: UnchangedCheck,
        name: str | None,
        started: float,
        started_ns: int,
    ) -> None:
        """The run with the repository registered and locked, recorded in `ingest_runs` whatever its end."""
        result.commit = found.commit
        result.files_seen = found.files_seen
        async with self.db.connection() as conn:
            async with conn.transaction():
                repo_id, _old_head, old_space = await store.register_repository(
                    conn, result.repo, result.root_path, move=name is not None
                )
            await self._lock(conn, result.repo)
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
                ctx = RunContext(
                    db=self.db,
                    settings=self.settings,
                    embedder=self.embedder,
                    reporter=self.reporter,
                    result=result,
                    skipped=Counter(found.skipped.values()),
                    config=unchanged.config,
                    repo_id=repo_id,
                    key=key,
                    space_id=space_id,
                    commit=found.commit,
                )
                try:
                    # Batches write chunks with their vectors atomically: after a successful run in this
                    # space no stored chunk lacks one, so the backfill scan is only needed otherwise.
                    complete = bool(previous_ok) and old_space == space_id
                    try:
                        untouched = await self._body(
                            conn, ctx, found, complete, lambda: unchanged.check_tree(found, started_ns)
                        )
                    except BaseException:
                        unchanged.cancel()
                        raise
                    phase = time.perf_counter()
                    proof = await unchanged.proof(found, result.skipped, untouched, space_id, started_ns)
                    async with conn.transaction():
                        await store.finish_repository(conn, repo_id, found.commit, space_id, proof)
                    first = previous_ok is None
                    if self.settings.ingest.prune_unreferenced_embeddings and (
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
                    "SELECT pg_advisory_unlock($1, $2)", store.INGEST_LOCK, store.lock_key(result.repo)
                )

    async def _body(
        self,
        conn: Any,
        ctx: RunContext,
        found: Discovery,
        complete: bool,
        after_reading: Callable[[], None],
    ) -> bool:
        """Bring the stored files in step with `found`; True when nothing was read or removed."""
        result = ctx.result
        phase = time.perf_counter()
        known_files, known_skips = await store.known_state(conn, ctx.repo_id)
        ctx.known_files = known_files
        present = {c.path for c in found.candidates}
        gone = sorted(p for p in (known_files.keys() | known_skips.keys()) if p not in present)
        to_read, unchanged_files = files_to_read(
            found, known_files, known_skips, config=ctx.config, space_id=ctx.space_id, skipped=ctx.skipped
        )
        result.files_unchanged += unchanged_files
        result.phases["compare"] = time.perf_counter() - phase
        self.reporter.progress.files_total = len(to_read)
        self.reporter.tick("ingest")

        phase = time.perf_counter()
        if gone:
            outcome = await write_rows(
                ctx, conn, store.BatchWrite(files=[], skips=[], remove=gone, embeddings={}, needed=set())
            )
            result.files_deleted += outcome.files_deleted
            result.chunks_deleted += outcome.chunks_deleted
        if to_read:
            if self._scheduler is None:
                self._scheduler = self._new_scheduler(len(to_read))
            await run_stages(ctx, self._scheduler, to_read, after_reading)
        result.phases["pipeline"] = time.perf_counter() - phase

        phase = time.perf_counter()
        backfilled = (
            0
            if complete
            else await backfill(
                ctx.db, ctx.settings, self.embedder, self.reporter, ctx.repo_id, ctx.key, ctx.space_id
            )
        )
        result.embeddings_backfilled = backfilled
        result.embeddings_computed += backfilled
        result.phases["backfill_check"] = time.perf_counter() - phase
        result.skipped = dict(ctx.skipped)
        result.files_skipped = sum(ctx.skipped.values())
        return not to_read and not gone

    def _new_scheduler(self, files: int) -> ReadScheduler:
        ing = self.settings.ingest
        options = ReadOptions(
            max_file_bytes=ing.max_file_bytes,
            max_line_chars=ing.max_line_chars,
            detect_secrets=ing.detect_secrets,
            secret_plugins=tuple(ing.secret_plugins) if ing.secret_plugins else None,
            chunk=ChunkOptions(ing.chunk_lines, ing.chunk_lines_overlap, ing.max_chunk_chars),
        )
        return ReadScheduler(options, files, processes=ing.reader_processes, min_files=ing.process_min_files)

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
            await asyncio.sleep(LOCK_POLL_SECONDS)


async def backfill(
    db: Database,
    settings: Settings,
    embedder: Embedder,
    reporter: ProgressReporter,
    repo_id: int,
    key: SpaceKey,
    space_id: int,
) -> int:
    """Embed stored chunks that have no vector in the active space (a new model, a pruned cache)."""
    total = 0
    page = max(settings.ingest.batch_max_chunks, 1)
    while True:
        async with db.connection() as conn:
            rows = await store.chunks_missing_embeddings(conn, repo_id, space_id, page)
        if not rows:
            return total
        reporter.tick("backfill")
        vectors = await embedder.embed_partial([content for _, content in rows])
        good = {h: v for (h, _), v in zip(rows, vectors, strict=True) if v is not None}
        if len(good) < len(rows):
            raise IngestError(
                f"The embedding server refused {len(rows) - len(good)} stored chunks of this repository",
                suggestion="Check the embedding model; re-ingest after fixing it.",
            )
        async with db.connection() as conn:
            await store.store_embeddings(conn, space_id, key.dimensions, good, shared=True)
        total += len(good)
        reporter.progress.embeddings_computed += len(good)
        reporter.tick()


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
        result = await IngestRun(db, settings, embedder, progress=progress).run(path, name)
    finally:
        if own:
            await embedder.aclose()
    record_metrics(result)
    return result


def record_metrics(result: IngestResult) -> None:
    """The run's counts and stage seconds as OpenTelemetry metrics (no-ops unless an exporter is on)."""
    repo = result.repo
    counts = {
        telemetry.ingest_files: {
            "seen": result.files_seen,
            "changed": result.files_changed,
            "deleted": result.files_deleted,
            "skipped": result.files_skipped,
        },
        telemetry.ingest_chunks: {"written": result.chunks_written, "deleted": result.chunks_deleted},
        telemetry.ingest_embeddings: {
            "computed": result.embeddings_computed,
            "reused": result.embeddings_reused,
        },
    }
    for counter, by_outcome in counts.items():
        for outcome, value in by_outcome.items():
            counter.add(value, {"repo": repo, "outcome": outcome})
    for stage, seconds in result.phases.items():
        telemetry.ingest_stage_duration.record(seconds, {"stage": stage})


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
        async with db.connection() as conn:
            repo_id = await conn.fetchval("SELECT id FROM mahavishnu.repositories WHERE name = $1", name)
            if repo_id is None:
                raise IngestError(
                    f"Repository {name!r} has not been ingested",
                    suggestion="Ingest it first (`mahavishnu ingest`).",
                )
            key, space_id = await resolve_space(conn, embedder)
            chunks = await conn.fetchval("SELECT count(*) FROM mahavishnu.chunks WHERE repo_id = $1", repo_id)
        computed = await backfill(
            db, settings, embedder, ProgressReporter(progress), int(repo_id), key, space_id
        )
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
