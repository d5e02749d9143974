"""Invariants of an ingested repository, as queries: the Dagster asset checks and the tests run them."""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg


@dataclass
class CheckOutcome:
    passed: bool
    counts: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)


async def _repo_ids(conn: asyncpg.Connection, repo: str | None) -> list[int] | None:
    """Ids of the repository named (None: all of them); None when the named one does not exist."""
    if repo is None:
        return [int(r["id"]) for r in await conn.fetch("SELECT id FROM mahavishnu.repositories")]
    value = await conn.fetchval("SELECT id FROM mahavishnu.repositories WHERE name = $1", repo)
    return None if value is None else [int(value)]


async def embeddings_complete(
    conn: asyncpg.Connection, repo: str | None, space_id: int | None
) -> CheckOutcome:
    """Every chunk of the repository (None: of all) has a vector of the active space, of its dimensions."""
    repo_id = await _repo_ids(conn, repo)
    if repo_id is None or space_id is None:
        return CheckOutcome(False, {"missing": -1}, [f"repository {repo!r} or its space is unknown"])
    rows = await conn.fetch(
        """SELECT c.path, c.start_line FROM mahavishnu.chunks c
           WHERE c.repo_id = ANY($1::bigint[]) AND NOT EXISTS (
               SELECT 1 FROM mahavishnu.embeddings e JOIN mahavishnu.embedding_spaces s ON s.id = e.space_id
               WHERE e.space_id = $2 AND e.content_hash = c.content_hash AND e.dimensions = s.dimensions)
           ORDER BY c.path, c.start_line""",
        repo_id,
        space_id,
    )
    chunks = await conn.fetchval(
        "SELECT count(*) FROM mahavishnu.chunks WHERE repo_id = ANY($1::bigint[])", repo_id
    )
    return CheckOutcome(
        not rows,
        {"missing": len(rows), "chunks": int(chunks)},
        [f"{r['path']}:{r['start_line']}" for r in rows[:10]],
    )


async def no_orphans(conn: asyncpg.Connection, repo: str | None) -> CheckOutcome:
    """Chunks agree with their file (repository, path, language); no path is both stored and skipped."""
    repo_id = await _repo_ids(conn, repo)
    if repo_id is None:
        return CheckOutcome(False, {"unknown_repository": 1}, [str(repo)])
    mismatched = await conn.fetch(
        """SELECT c.path FROM mahavishnu.chunks c JOIN mahavishnu.source_files f ON f.id = c.file_id
           WHERE (c.repo_id = ANY($1::bigint[]) OR f.repo_id = ANY($1::bigint[]))
             AND (c.repo_id <> f.repo_id OR c.path <> f.path OR c.language <> f.language)
           LIMIT 10""",
        repo_id,
    )
    both = await conn.fetch(
        """SELECT s.path FROM mahavishnu.skipped_files s JOIN mahavishnu.source_files f
               ON f.repo_id = s.repo_id AND f.path = s.path
           WHERE s.repo_id = ANY($1::bigint[]) LIMIT 10""",
        repo_id,
    )
    gaps = await conn.fetch(
        """SELECT f.path FROM mahavishnu.source_files f
           JOIN mahavishnu.chunks c ON c.file_id = f.id
           WHERE f.repo_id = ANY($1::bigint[])
           GROUP BY f.id, f.path HAVING max(c.chunk_index) + 1 <> count(*) OR min(c.chunk_index) <> 0
           LIMIT 10""",
        repo_id,
    )
    counts = {"mismatched_chunks": len(mismatched), "stored_and_skipped": len(both), "index_gaps": len(gaps)}
    examples = [r["path"] for r in [*mismatched, *both, *gaps]][:10]
    return CheckOutcome(not any(counts.values()), counts, examples)


async def line_ranges_valid(conn: asyncpg.Connection, repo: str | None) -> CheckOutcome:
    """1 <= start <= end <= the file's line count, and the content holds exactly end - start + 1 lines."""
    repo_id = await _repo_ids(conn, repo)
    if repo_id is None:
        return CheckOutcome(False, {"unknown_repository": 1}, [str(repo)])
    rows = await conn.fetch(
        """SELECT c.path, c.start_line, c.end_line FROM mahavishnu.chunks c
           JOIN mahavishnu.source_files f ON f.id = c.file_id
           WHERE c.repo_id = ANY($1::bigint[])
             AND (c.start_line < 1 OR c.end_line < c.start_line OR c.end_line > f.line_count
                  OR length(c.content) - length(replace(c.content, E'\\n', '')) <> c.end_line - c.start_line)
           ORDER BY c.path, c.start_line""",
        repo_id,
    )
    return CheckOutcome(
        not rows,
        {"invalid": len(rows)},
        [f"{r['path']}:{r['start_line']}-{r['end_line']}" for r in rows[:10]],
    )
