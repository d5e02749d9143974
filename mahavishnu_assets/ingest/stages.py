"""The overlapping stages of an ingest run: read and chunk into batches -> embed -> write, joined by queues.

The reading scheduler hands files to worker processes (or a thread) and its outcomes are gathered into
batches; embedding workers (bounded) fetch vectors for contents the cache lacks; writers replace each batch
in one transaction. So the database work and the chunking overlap embedding, and a crash between batches
leaves a consistent database that the next run completes.

A batch whose embedding servers kept failing is set aside while the rest proceeds, and embedded again once
every other batch is done (`ollama.final_passes` passes, with fresh attempts). What is still missing after the
last pass is left unwritten, file by file: those files keep their old rows (or none), so the next run finds
them changed and embeds only what this one could not; this run fails with `EmbeddingIncompleteError`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from mahavishnu_assets.errors import (
    EmbeddingIncompleteError,
    EmbeddingUnavailableError,
    IngestError,
)
from mahavishnu_assets.ingest import store
from mahavishnu_assets.ingest.batch import Batch
from mahavishnu_assets.ingest.discover import EMBEDDING_REJECTED, Candidate
from mahavishnu_assets.ingest.inflight import EmbeddingsInFlight
from mahavishnu_assets.ingest.read_scheduler import FIRST_SLICE_FILES, ReadScheduler
from mahavishnu_assets.ingest.run_context import RunContext
from mahavishnu_assets.ingest.servers import first_error

logger = logging.getLogger(__name__)

TAIL_BATCH_CHUNKS = 300  # batch size once all files are handed to readers
# Files written by a run after which the files table is analyzed once (store.refresh_file_statistics). From
# about 300 rows PostgreSQL plans an index lookup for a foreign-key check instead of a scan.
REFRESH_STATISTICS_FILES = 500
# Batches set aside that a final pass embeds at once.
FINAL_PASS_BATCHES = 32


@dataclass
class Unembedded:
    """What a run could not embed even in its final passes; those files are left for the next run."""

    chunks: int = 0
    texts: set[bytes] = field(default_factory=set)
    files: list[str] = field(default_factory=list)

    def error(self, passes: int) -> EmbeddingIncompleteError:
        return EmbeddingIncompleteError(
            f"{self.chunks} chunks ({len(self.texts)} distinct texts) of {len(self.files)} files could not be "
            f"embedded: the embedding servers kept failing through the run and {passes} final passes. Everything "
            "else is stored; those files were left as they were, for the next run",
            unembedded_chunks=self.chunks,
            unembedded_texts=len(self.texts),
            files=len(self.files),
            first_files=sorted(self.files)[:10],
        )


async def run_stages(
    ctx: RunContext,
    scheduler: ReadScheduler,
    to_read: list[Candidate],
    after_reading: Callable[[], None] | None = None,
) -> None:
    """Read, embed and write `to_read`; `after_reading` is called once every file is read. A failing stage
    cancels the others; the batches already committed stay (each is complete)."""
    ing = ctx.settings.ingest
    depth = ing.pipeline_depth
    writers = max(1, ing.writer_connections)
    chunked: asyncio.Queue[Batch | None] = asyncio.Queue(maxsize=depth)
    embedded: asyncio.Queue[Batch | None] = asyncio.Queue(maxsize=depth)
    inflight = EmbeddingsInFlight(ctx.db, ctx.embedder)
    set_aside: list[Batch] = []
    unembedded = Unembedded()
    # Time each stage spent working (embed: summed over parallel workers), for tuning and benchmarks.
    busy: dict[str, float] = {"reader_wait": 0.0, "embed": 0.0, "write": 0.0}
    same_as = {p: k.content_hash for p, k in ctx.known_files.items() if k.config == ctx.config}

    async def reading() -> None:
        batch, limit = Batch(), min(FIRST_SLICE_FILES, ing.file_batch_size)
        async with aclosing(scheduler.outcomes(to_read, same_as)) as slices:
            async for outcomes in slices:
                # Once every file is handed out, batches shrink: the last writes after the last embedding
                # are then short, so little work trails the embedding server.
                chunk_limit = (
                    min(ing.batch_max_chunks, TAIL_BATCH_CHUNKS)
                    if scheduler.exhausted
                    else ing.batch_max_chunks
                )
                for outcome in outcomes:
                    batch.add(outcome, ctx.known_files)
                    if (
                        len(batch.files) >= limit
                        or batch.chunk_count >= chunk_limit
                        or batch.files_read >= 4 * ing.file_batch_size
                    ):
                        await chunked.put(batch)
                        batch, limit = Batch(), ing.file_batch_size
        if after_reading is not None:
            after_reading()
        if batch.files_read:
            await chunked.put(batch)
        for _ in range(depth):
            await chunked.put(None)

    async def embed_one(batch: Batch) -> None:
        began, computed = time.perf_counter(), batch.computed
        failure: EmbeddingUnavailableError | None = None
        try:
            await inflight.embed_batch(batch, ctx.space_id)
        except EmbeddingUnavailableError as exc:
            failure = exc
        finally:
            ctx.reporter.progress.embeddings_computed += batch.computed - computed
            busy["embed"] += time.perf_counter() - began
        if failure is None:
            await embedded.put(batch)
            return
        # Its complete files are written now; the others wait for the final passes.
        ready = batch.split_ready(ctx.known_files)
        logger.warning(
            "Set aside %d files for the end of the run: %d contents not embedded (%s)",
            len(batch.files),
            len(batch.unavailable),
            failure.message,
        )
        set_aside.append(batch)
        if ready is not None:
            await embedded.put(ready)

    async def embedding_worker() -> None:
        while (batch := await chunked.get()) is not None:
            await embed_one(batch)

    async def embed_each(batches: Iterator[Batch]) -> None:
        # Several of these share one iterator: each batch is taken by one of them.
        for batch in batches:
            await embed_one(batch)

    async def final_passes() -> None:
        """The batches set aside, embedded again now that the rest is done; each pass with fresh attempts."""
        passes = ctx.settings.ollama.final_passes
        for number in range(1, passes + 1):
            if not set_aside:
                return
            todo = iter(list(set_aside))
            logger.warning(
                "Embedding %d batches set aside again (final pass %d of %d)", len(set_aside), number, passes
            )
            set_aside.clear()
            new_pass = getattr(ctx.embedder, "new_pass", None)
            if new_pass is not None:
                new_pass()
            # Many at once: what these batches still lack is a few requests each, and a batch waiting out a
            # retry's delay would otherwise hold back the others (the server pool bounds the requests).
            async with asyncio.TaskGroup() as group:
                for _ in range(FINAL_PASS_BATCHES):
                    group.create_task(embed_each(todo))

    async def embedding() -> None:
        async with asyncio.TaskGroup() as group:
            for _ in range(depth):
                group.create_task(embedding_worker())
        await final_passes()
        # Still incomplete: written without the files that lack a vector.
        for batch in set_aside:
            await embedded.put(batch)
        for _ in range(writers):
            await embedded.put(None)

    async def writing() -> None:
        # Each writer has its own connection: file batches touch disjoint paths, and vectors are merged in
        # content-hash order, so parallel transactions cannot deadlock.
        async with ctx.db.connection() as conn:
            await store.accept_wire_vectors(conn)
            while (batch := await embedded.get()) is not None:
                began = time.perf_counter()
                outcome = await write_embedded_batch(ctx, inflight, conn, batch, unembedded)
                busy["write"] += time.perf_counter() - began
                _count(ctx, batch, outcome)
                progress = ctx.reporter.progress
                await store.update_run(
                    conn, ctx.result.run_id or 0, progress.files_total, progress.files_done
                )
                if ctx.result.files_changed >= REFRESH_STATISTICS_FILES and not ctx.statistics_fresh:
                    ctx.statistics_fresh = True
                    await store.refresh_file_statistics(conn)
                ctx.reporter.tick()

    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(reading(), name="ingest-reader")
            group.create_task(embedding(), name="ingest-embed")
            for i in range(writers):
                group.create_task(writing(), name=f"ingest-writer-{i}")
    except BaseExceptionGroup as failure:
        raise first_error(failure) from None
    busy["reader_wait"] = scheduler.waited
    ctx.result.phases.update({f"{k}_busy": v for k, v in busy.items()})
    if unembedded.files:
        raise unembedded.error(ctx.settings.ollama.final_passes)


def _count(ctx: RunContext, batch: Batch, outcome: store.BatchOutcome) -> None:
    """Add a written batch to the run's report and progress."""
    result = ctx.result
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
    ctx.skipped.update(batch.skip_reasons)
    ctx.reporter.progress.files_done += batch.files_read
    ctx.reporter.progress.chunks_written += outcome.chunks_written


async def write_embedded_batch(
    ctx: RunContext,
    inflight: EmbeddingsInFlight,
    conn: Any,
    batch: Batch,
    unembedded: Unembedded | None = None,
) -> store.BatchOutcome:
    """Replace the batch's files in one transaction; a file with a refused chunk is recorded as skipped, a file
    with a chunk the servers never embedded (`batch.unavailable`) is left out and counted in `unembedded`."""
    files, skips = batch.files, list(batch.skips)
    cached: set[bytes] = set()
    inflight.recover(batch)
    if batch.unavailable:
        files, cached = _leave_unembedded(ctx, batch, unembedded or Unembedded())
    if batch.rejected:
        kept = []
        for f in files:
            if any(c.content_hash in batch.rejected for c in f.chunks):
                logger.warning("Skipping %s: the embedding server refused one of its chunks", f.path)
                skips.append(
                    store.NewSkip(
                        f.path, EMBEDDING_REJECTED, f.size, f.mtime_ns, f.ctime_ns, f.inode, ctx.space_id
                    )
                )
                batch.skip_reasons[EMBEDDING_REJECTED] += 1
                if f.path in ctx.known_files:
                    batch.modified -= 1
                else:
                    batch.added -= 1
            else:
                kept.append(f)
        files = kept
    needed = {c.content_hash for f in files for c in f.chunks}
    # Vectors this run already committed are only checked for; the rest are stored first.
    # The vectors of files left out go to the cache too: the next run embeds only what is missing.
    vectors = {
        h: v for h, v in batch.vectors.items() if (h in needed or h in cached) and h not in inflight.committed
    }
    rows = store.BatchWrite(files=files, skips=skips, remove=batch.remove, embeddings=vectors, needed=needed)
    for _attempt in range(3):
        try:
            outcome = await write_rows(
                ctx,
                conn,
                rows,
                stat_updates=batch.stat_updates,
                # Vectors another batch computed may be stored by its writer at this moment.
                shared=any(h not in batch.mine for h in rows.embeddings),
            )
            break
        except store.MissingEmbeddingsError as exc:
            # Pruned by a concurrent ingest between our cache lookup and this write: compute them now.
            contents = {c.content_hash: c.document for f in files for c in f.chunks}
            missing = sorted(exc.hashes)
            fresh = await inflight.embed_texts([contents[h] for h in missing])
            for h, v in zip(missing, fresh, strict=True):
                if v is None:
                    raise IngestError("The embedding server refused a chunk it had embedded before") from None
                rows.embeddings[h] = v
                batch.mine.add(h)
                batch.computed += 1
    else:
        raise IngestError("Embeddings kept vanishing during the write; is another process pruning them?")
    inflight.written(batch, set(vectors))
    batch.files = files
    return outcome


async def write_rows(
    ctx: RunContext,
    conn: Any,
    rows: store.BatchWrite,
    *,
    stat_updates: list[tuple[str, int | None, int | None, int | None]] | None = None,
    shared: bool = False,
) -> store.BatchOutcome:
    """`store.write_batch` into the run's repository, space and commit."""
    return await store.write_batch(
        conn,
        repo_id=ctx.repo_id,
        space_id=ctx.space_id,
        dimensions=ctx.key.dimensions,
        commit=ctx.commit,
        config=ctx.config,
        batch=rows,
        stat_updates=stat_updates,
        shared=shared,
    )


def _leave_unembedded(
    ctx: RunContext, batch: Batch, unembedded: Unembedded
) -> tuple[list[store.NewFile], set[bytes]]:
    """The batch's files whose every chunk has a vector, and the hashes of vectors the others hold."""
    kept: list[store.NewFile] = []
    cached: set[bytes] = set()
    for f in batch.files:
        hashes = {c.content_hash for c in f.chunks}
        lacking = hashes & batch.unavailable
        if not lacking:
            kept.append(f)
            continue
        unembedded.files.append(f.path)
        unembedded.chunks += sum(1 for c in f.chunks if c.content_hash in lacking)
        unembedded.texts |= lacking
        cached |= hashes - lacking
        if f.path in ctx.known_files:
            batch.modified -= 1
        else:
            batch.added -= 1
    return kept, cached
