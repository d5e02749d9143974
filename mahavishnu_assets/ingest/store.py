"""PostgreSQL side of ingestion: repository rows, known file state, atomic file-batch replacement, pruning.

Every write that changes what a repository holds happens in one transaction per file batch, which replaces
the batch's old rows (files, chunks, skip verdicts) after checking that every embedding its chunks need is
in the cache (new vectors are committed to the cache just before, in their own short transaction). A crash
between batches leaves each file either wholly old or wholly new, and every stored chunk with its embedding.
Chunks are bulk-loaded with binary COPY (asyncpg `copy_records_to_table`), always naming their columns.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import asyncpg

from mahavishnu_assets.database.vectors import register_vector_codec
from mahavishnu_assets.errors import IngestError

logger = logging.getLogger(__name__)

# Advisory lock classes (first key of the two-int form): one ingest per repository at a time; pruning
# embeddings excludes batch writers of the same space.
INGEST_LOCK = 0x6D76_0001
PRUNE_LOCK = 0x6D76_0002

CHUNK_COLUMNS = (
    "file_id",
    "repo_id",
    "chunk_index",
    "path",
    "language",
    "start_line",
    "end_line",
    "content",
    "content_hash",
    "commit",
    "symbol",
    "context",
    "names",
)
SYMBOL_COLUMNS = (
    "file_id",
    "repo_id",
    "path",
    "name",
    "qualified_name",
    "kind",
    "language",
    "start_line",
    "end_line",
)
_STAGE_EMBEDDINGS = "mahavishnu_stage_embeddings"


class KnownFile(NamedTuple):
    """A stored file's state as the database has it (a tuple: thousands are built on every run)."""

    content_hash: bytes
    size: int
    mtime_ns: int | None
    ctime_ns: int | None
    inode: int | None
    config: str | None
    commit: str | None


class KnownSkip(NamedTuple):
    reason: str
    size: int
    mtime_ns: int | None
    ctime_ns: int | None
    inode: int | None
    config: str | None
    space_id: int | None


@dataclass
class NewFile:
    """A file to (re)write: its row, its chunks and its definitions."""

    path: str
    content_hash: bytes
    language: str
    size: int
    line_count: int
    mtime_ns: int | None
    ctime_ns: int | None
    inode: int | None
    chunks: list[Any]  # chunk.Chunk
    symbols: list[Any] = field(default_factory=list)  # symbols.Symbol


@dataclass
class NewSkip:
    path: str
    reason: str
    size: int
    mtime_ns: int | None
    ctime_ns: int | None
    inode: int | None
    space_id: int | None = None


@dataclass
class BatchWrite:
    """Everything one transaction replaces."""

    files: list[NewFile]
    skips: list[NewSkip]
    remove: list[str]  # paths whose file rows and skip verdicts go (deleted, or now skipped/ignored)
    embeddings: dict[bytes, Any]  # content hash -> vector, computed by this run
    needed: set[bytes]  # every content hash the batch's chunks reference


@dataclass
class BatchOutcome:
    chunks_written: int
    chunks_deleted: int
    files_deleted: int
    embeddings_inserted: int


class MissingEmbeddingsError(Exception):
    """Embeddings the batch relied on were pruned meanwhile; the caller computes them and retries."""

    def __init__(self, hashes: set[bytes]) -> None:
        super().__init__(f"{len(hashes)} embeddings vanished")
        self.hashes = hashes


def vector_wire(matrix: Any) -> list[bytes]:
    """Rows of a big-endian float32 matrix in pgvector's binary format (dimensions, 0, values)."""
    import struct

    header = struct.pack(">HH", matrix.shape[1], 0)
    return [header + row.tobytes() for row in matrix]


async def accept_wire_vectors(conn: asyncpg.Connection) -> None:
    """Let this connection take vectors already encoded (see vector_wire), in the extension's own schema.
    A pool connection has the same codec already (database/vectors.py); a plain one gets it here."""
    await register_vector_codec(conn)


def lock_key(repo_name: str) -> int:
    """A stable 32-bit key for a repository name (ids are not known before the row exists)."""
    return int.from_bytes(hashlib.sha256(repo_name.encode()).digest()[:4], "big", signed=True)


async def register_repository(
    conn: asyncpg.Connection, name: str, root_path: str, *, move: bool
) -> tuple[int, str | None, int | None]:
    """Get or create the repository row; returns (id, stored head commit, last fully embedded space).

    A name already bound to another folder is refused unless `move` (an explicit --name) re-points it.
    """
    row = await conn.fetchrow(
        """INSERT INTO mahavishnu.repositories (name, root_path) VALUES ($1, $2)
           ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name
           RETURNING id, root_path, head_commit, space_id""",
        name,
        root_path,
    )
    assert row is not None
    if row["root_path"] != root_path:
        if not move:
            raise IngestError(
                f"Repository name {name!r} is already registered for {row['root_path']}",
                suggestion="Pass --name with another name for this folder, or --name "
                f"{name} explicitly to move the repository to {root_path}.",
            )
        await conn.execute(
            "UPDATE mahavishnu.repositories SET root_path = $2 WHERE id = $1", row["id"], root_path
        )
    return int(row["id"]), row["head_commit"], row["space_id"]


async def known_state(
    conn: asyncpg.Connection, repo_id: int
) -> tuple[dict[str, KnownFile], dict[str, KnownSkip]]:
    # Positional unpacking of records: this runs on every ingest, for every stored file.
    rows = await conn.fetch(
        """SELECT path, content_hash, size_bytes, mtime_ns, ctime_ns, inode, config, commit
           FROM mahavishnu.source_files WHERE repo_id = $1""",
        repo_id,
    )
    files = {r[0]: KnownFile._make(tuple(r)[1:]) for r in rows}
    rows = await conn.fetch(
        """SELECT path, reason, size_bytes, mtime_ns, ctime_ns, inode, config, space_id
           FROM mahavishnu.skipped_files WHERE repo_id = $1""",
        repo_id,
    )
    skips = {r[0]: KnownSkip._make(tuple(r)[1:]) for r in rows}
    return files, skips


async def existing_embeddings(conn: asyncpg.Connection, space_id: int, hashes: Sequence[bytes]) -> set[bytes]:
    if not hashes:
        return set()
    rows = await conn.fetch(
        "SELECT content_hash FROM mahavishnu.embeddings WHERE space_id = $1 AND content_hash = ANY($2::bytea[])",
        space_id,
        list(hashes),
    )
    return {bytes(r["content_hash"]) for r in rows}


async def _ensure_stage(conn: asyncpg.Connection) -> None:
    # One temp table per connection, emptied at every commit: COPY cannot say ON CONFLICT, the merge can.
    await conn.execute(
        f"""CREATE TEMP TABLE IF NOT EXISTS {_STAGE_EMBEDDINGS} (
                content_hash bytea NOT NULL,
                embedding    vector NOT NULL
            ) ON COMMIT DELETE ROWS"""
    )


async def insert_embeddings(
    conn: asyncpg.Connection, space_id: int, dimensions: int, embeddings: dict[bytes, Any]
) -> int:
    """Merge vectors into the cache (inside the caller's transaction); a concurrent writer's copy wins.

    Rows go in content-hash order so that concurrent writers take row locks in one order (no deadlock).
    """
    if not embeddings:
        return 0
    await _ensure_stage(conn)
    await conn.copy_records_to_table(
        _STAGE_EMBEDDINGS,
        records=list(embeddings.items()),
        columns=["content_hash", "embedding"],
    )
    status = await conn.execute(
        f"""INSERT INTO mahavishnu.embeddings (space_id, content_hash, dimensions, embedding)
            SELECT $1, content_hash, $2, embedding FROM {_STAGE_EMBEDDINGS} ORDER BY content_hash
            ON CONFLICT (space_id, content_hash) DO NOTHING""",  # noqa: S608 - constant table name
        space_id,
        dimensions,
    )
    await conn.execute(f"TRUNCATE {_STAGE_EMBEDDINGS}")
    return int(status.split()[-1])


@asynccontextmanager
async def _batch_transaction(conn: asyncpg.Connection, space_id: int) -> AsyncIterator[None]:
    """A transaction of ingest writes, holding the space's prune lock (shared) to commit.

    It needs atomicity, not durability: what a server crash loses is redone by the next run (its files still
    differ from what is stored, or its vectors are still missing), so the commit does not wait for the WAL.
    """
    async with conn.transaction():
        await conn.execute("SET LOCAL synchronous_commit = off")
        await conn.execute("SELECT pg_advisory_xact_lock_shared($1, $2)", PRUNE_LOCK, space_id)
        yield


async def store_embeddings(
    conn: asyncpg.Connection,
    space_id: int,
    dimensions: int,
    embeddings: dict[bytes, Any],
    *,
    shared: bool = False,
) -> int:
    """Commit vectors to the cache in their own short transaction, before the batch that references them.

    A cache row nothing references yet is harmless (a crash here leaves vectors the re-run reuses, and pruning
    removes the rest), and committing it apart keeps a concurrent writer that needs the same content from
    waiting for a whole batch transaction. Vectors go in by direct binary COPY; `shared` (some may be written
    by another batch at the same time) or a unique violation takes the merge path instead.
    """
    if not embeddings:
        return 0
    if not shared:
        try:
            async with _batch_transaction(conn, space_id):
                await conn.copy_records_to_table(
                    "embeddings",
                    schema_name="mahavishnu",
                    columns=["space_id", "content_hash", "dimensions", "embedding"],
                    records=[(space_id, h, dimensions, v) for h, v in sorted(embeddings.items())],
                )
            return len(embeddings)
        except asyncpg.UniqueViolationError:
            pass  # stored meanwhile by a concurrent ingest sharing this content
    async with _batch_transaction(conn, space_id):
        return await insert_embeddings(conn, space_id, dimensions, embeddings)


async def write_batch(
    conn: asyncpg.Connection,
    *,
    repo_id: int,
    space_id: int,
    dimensions: int,
    commit: str | None,
    config: str,
    batch: BatchWrite,
    stat_updates: list[tuple[str, int | None, int | None, int | None]] | None = None,
    shared: bool = False,
) -> BatchOutcome:
    """Store the batch's new vectors, then replace its files in one transaction; raises MissingEmbeddingsError
    (no file written) when embeddings it counted on were pruned meanwhile."""
    inserted = await store_embeddings(conn, space_id, dimensions, batch.embeddings, shared=shared)
    # The prune lock held to commit: no vector can vanish between the check below and the chunks using it.
    async with _batch_transaction(conn, space_id):
        if batch.needed:
            present = await existing_embeddings(conn, space_id, list(batch.needed))
            if len(present) != len(batch.needed):
                raise MissingEmbeddingsError(set(batch.needed) - present)
        paths = [f.path for f in batch.files] + [s.path for s in batch.skips] + batch.remove
        chunks_deleted = files_deleted = 0
        if paths:
            chunks_deleted = await conn.fetchval(
                """WITH d AS (
                       DELETE FROM mahavishnu.chunks c USING mahavishnu.source_files f
                       WHERE f.repo_id = $1 AND f.path = ANY($2::text[]) AND c.file_id = f.id
                       RETURNING 1)
                   SELECT count(*) FROM d""",
                repo_id,
                paths,
            )
            files_deleted = await conn.fetchval(
                """WITH d AS (
                       DELETE FROM mahavishnu.source_files WHERE repo_id = $1 AND path = ANY($2::text[])
                       RETURNING path)
                   SELECT count(*) FROM d WHERE NOT (path = ANY($3::text[]))""",
                repo_id,
                paths,
                [f.path for f in batch.files],
            )
            await conn.execute(
                "DELETE FROM mahavishnu.skipped_files WHERE repo_id = $1 AND path = ANY($2::text[])",
                repo_id,
                paths,
            )
        chunks_written = 0
        if batch.files:
            rows = await conn.fetch(
                """INSERT INTO mahavishnu.source_files
                       (repo_id, path, content_hash, language, size_bytes, line_count, commit,
                        mtime_ns, ctime_ns, inode, config)
                   SELECT $1, u.path, u.content_hash, u.language, u.size_bytes, u.line_count, $2,
                          u.mtime_ns, u.ctime_ns, u.inode, $3
                   FROM unnest($4::text[], $5::bytea[], $6::text[], $7::bigint[], $8::int[],
                               $9::bigint[], $10::bigint[], $11::bigint[])
                        AS u(path, content_hash, language, size_bytes, line_count, mtime_ns, ctime_ns, inode)
                   RETURNING id, path""",
                repo_id,
                commit,
                config,
                [f.path for f in batch.files],
                [f.content_hash for f in batch.files],
                [f.language for f in batch.files],
                [f.size for f in batch.files],
                [f.line_count for f in batch.files],
                [f.mtime_ns for f in batch.files],
                [f.ctime_ns for f in batch.files],
                [f.inode for f in batch.files],
            )
            ids = {r["path"]: r["id"] for r in rows}
            records = [
                (
                    ids[f.path],
                    repo_id,
                    c.index,
                    f.path,
                    f.language,
                    c.start_line,
                    c.end_line,
                    c.content,
                    c.content_hash,
                    commit,
                    c.symbol,
                    c.context or None,
                    c.names,
                )
                for f in batch.files
                for c in f.chunks
            ]
            if records:
                await conn.copy_records_to_table(
                    "chunks", schema_name="mahavishnu", columns=list(CHUNK_COLUMNS), records=records
                )
            chunks_written = len(records)
            # Definitions go with their file: same transaction, and deleted with its row (ON DELETE CASCADE).
            definitions = [
                (
                    ids[f.path],
                    repo_id,
                    f.path,
                    s.name,
                    s.qualified_name,
                    s.kind,
                    f.language,
                    s.start_line,
                    s.end_line,
                )
                for f in batch.files
                for s in f.symbols
            ]
            if definitions:
                await conn.copy_records_to_table(
                    "symbols", schema_name="mahavishnu", columns=list(SYMBOL_COLUMNS), records=definitions
                )
        if batch.skips:
            await conn.executemany(
                """INSERT INTO mahavishnu.skipped_files
                       (repo_id, path, reason, size_bytes, mtime_ns, ctime_ns, inode, config, space_id)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
                [
                    (repo_id, s.path, s.reason, s.size, s.mtime_ns, s.ctime_ns, s.inode, config, s.space_id)
                    for s in batch.skips
                ],
            )
        await refresh_stats(conn, repo_id, stat_updates or [])
    return BatchOutcome(int(chunks_written), int(chunks_deleted or 0), int(files_deleted or 0), inserted)


async def refresh_stats(
    conn: asyncpg.Connection, repo_id: int, rows: list[tuple[str, int | None, int | None, int | None]]
) -> None:
    """Record new `lstat` facts of files whose content did not change (touched, copied, checked out)."""
    if not rows:
        return
    await conn.execute(
        """UPDATE mahavishnu.source_files f SET mtime_ns = u.mtime_ns, ctime_ns = u.ctime_ns, inode = u.inode
           FROM unnest($2::text[], $3::bigint[], $4::bigint[], $5::bigint[]) AS u(path, mtime_ns, ctime_ns, inode)
           WHERE f.repo_id = $1 AND f.path = u.path""",
        repo_id,
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        [r[3] for r in rows],
    )


async def chunks_missing_embeddings(
    conn: asyncpg.Connection, repo_id: int, space_id: int, limit: int
) -> list[tuple[bytes, str]]:
    """Distinct chunk documents (context header, then content: what the hash keys) of the repository without
    a vector in the space (after a model change)."""
    rows = await conn.fetch(
        """SELECT DISTINCT ON (c.content_hash) c.content_hash,
                  CASE WHEN c.context IS NULL THEN c.content ELSE c.context || E'\\n' || c.content END AS content
           FROM mahavishnu.chunks c
           WHERE c.repo_id = $1
             AND NOT EXISTS (SELECT 1 FROM mahavishnu.embeddings e
                             WHERE e.space_id = $2 AND e.content_hash = c.content_hash)
           ORDER BY c.content_hash
           LIMIT $3""",
        repo_id,
        space_id,
        limit,
    )
    return [(bytes(r["content_hash"]), r["content"]) for r in rows]


async def prune_unreferenced_embeddings(conn: asyncpg.Connection, space_id: int) -> int:
    """Delete the space's vectors that no chunk of any repository references; waits out batch writers."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", PRUNE_LOCK, space_id)
        status = await conn.execute(
            """DELETE FROM mahavishnu.embeddings e
               WHERE e.space_id = $1
                 AND NOT EXISTS (SELECT 1 FROM mahavishnu.chunks c WHERE c.content_hash = e.content_hash)""",
            space_id,
        )
    return int(status.split()[-1])


async def start_run(conn: asyncpg.Connection, repo_id: int, commit: str | None, space_id: int) -> int:
    # Runs of this repository still `running` died without finishing: we hold the repository's lock now.
    await conn.execute(
        """UPDATE mahavishnu.ingest_runs SET status = 'abandoned', finished_at = now(), updated_at = now()
           WHERE repo_id = $1 AND status = 'running'""",
        repo_id,
    )
    # Whatever the last run proved unchanged stops holding once this run may write: cleared (and committed)
    # first, so a crash mid-way never leaves a key describing files that were being replaced.
    await conn.execute("UPDATE mahavishnu.repositories SET unchanged_key = NULL WHERE id = $1", repo_id)
    run_id = await conn.fetchval(
        """INSERT INTO mahavishnu.ingest_runs (repo_id, commit, space_id) VALUES ($1, $2, $3) RETURNING id""",
        repo_id,
        commit,
        space_id,
    )
    return int(run_id)


async def update_run(conn: asyncpg.Connection, run_id: int, files_total: int, files_done: int) -> None:
    await conn.execute(
        """UPDATE mahavishnu.ingest_runs SET files_total = $2, files_done = $3, updated_at = now()
           WHERE id = $1""",
        run_id,
        files_total,
        files_done,
    )


async def refresh_file_statistics(conn: asyncpg.Connection) -> None:
    """Analyze `source_files`, so plans made while it was nearly empty are made again.

    Every chunk row's foreign-key check runs a plan each connection keeps until the table's statistics
    change. Made while a first ingest's first batch had put a few hundred rows there, that plan scans the
    whole table: checks then cost O(files) each, and a first ingest O(chunks x files) (django: 107 million
    rows read, about 4 of PostgreSQL's 14 CPU-s, unless autovacuum happened to analyze it meanwhile). A few
    milliseconds here; every connection then plans an index lookup."""
    try:
        await conn.execute("ANALYZE mahavishnu.source_files")
    except asyncpg.PostgresError as exc:  # e.g. a role that may write the table but not analyze it
        logger.warning("Could not analyze mahavishnu.source_files: %s", exc)


async def finish_run(
    conn: asyncpg.Connection, run_id: int, status: str, stats: dict[str, Any] | None, error: str | None = None
) -> None:
    await conn.execute(
        """UPDATE mahavishnu.ingest_runs
           SET status = $2, stats = $3, error = $4, finished_at = now(), updated_at = now()
           WHERE id = $1""",
        run_id,
        status,
        stats,
        error,
    )


async def finish_repository(
    conn: asyncpg.Connection,
    repo_id: int,
    commit: str | None,
    space_id: int,
    unchanged_key: str | None = None,
) -> None:
    await conn.execute(
        """UPDATE mahavishnu.repositories
           SET head_commit = $2, space_id = $3, last_ingested_at = now(), unchanged_key = $4
           WHERE id = $1""",
        repo_id,
        commit,
        space_id,
        unchanged_key,
    )


async def unchanged_state(conn: asyncpg.Connection, name: str) -> asyncpg.Record | None:
    """The repository's unchanged key and root, and the counts of its latest run if that run succeeded."""
    return await conn.fetchrow(
        """SELECT r.id, r.root_path, r.unchanged_key, last.status, last.stats
           FROM mahavishnu.repositories r
           LEFT JOIN LATERAL (SELECT i.status, i.stats FROM mahavishnu.ingest_runs i
                              WHERE i.repo_id = r.id ORDER BY i.id DESC LIMIT 1) last ON true
           WHERE r.name = $1""",
        name,
    )


async def record_unchanged_run(
    conn: asyncpg.Connection, repo_id: int, commit: str | None, space_id: int, stats_json: str
) -> int:
    """A finished run that had nothing to do, in one short transaction (the stats as JSON text)."""
    async with conn.transaction():
        await conn.execute("SET LOCAL synchronous_commit = off")
        run_id = await conn.fetchval(
            """WITH run AS (
                   INSERT INTO mahavishnu.ingest_runs
                       (repo_id, commit, space_id, status, stats, finished_at, files_total, files_done)
                   VALUES ($1, $2, $3, 'succeeded', $4::text::jsonb, now(), 0, 0) RETURNING id
               ), touched AS (
                   UPDATE mahavishnu.repositories SET last_ingested_at = now() WHERE id = $1
               )
               SELECT id FROM run""",
            repo_id,
            commit,
            space_id,
            stats_json,
        )
    return int(run_id)
