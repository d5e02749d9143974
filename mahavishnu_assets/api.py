"""The stable in-process API: search, symbols, stored lines, repositories, memories and snapshots on one pool.

    async with open_memory() as memory:
        hits = await memory.search("where are migrations applied", k=5)
        lines = await memory.read_lines("myrepo", "src/app.py", 10, 30)

`open_memory` starts (or reaches) the server and applies pending migrations as every command does, then keeps
one asyncpg pool and one embedder for every call. The CLI's `search` and the MCP server's tools call these
methods, so there is one implementation of each operation. Arguments are checked here: a bad one raises a
`MahavishnuError` (ArgumentError, NotFoundError, SearchError, MemoryStoreError) with a one-line message.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import asyncpg

from mahavishnu_assets.database.pool import CONNECTION_ERRORS, Database
from mahavishnu_assets.errors import (
    ArgumentError,
    DatabaseUnavailableError,
    NotFoundError,
    PoolExhaustedError,
    SearchError,
)
from mahavishnu_assets.search.query_embedder import QueryEmbedder
from mahavishnu_assets.settings import Settings, load_settings

if TYPE_CHECKING:
    from mahavishnu_assets.ingest.embed import Embedder
    from mahavishnu_assets.memory.store import MemoryStore

logger = logging.getLogger(__name__)

T = TypeVar("T")

MAX_QUERY_CHARS = 2000
MAX_NAME_CHARS = 300
MAX_PATH_CHARS = 4096
MAX_MEMORY_CHARS = 100_000
MAX_TAGS = 32
MAX_TAG_CHARS = 100
MAX_AGENT_CHARS = 200
MAX_SYMBOLS = 50
# A read that failed with these is tried once more on fresh connections. asyncpg reports a backend terminated
# while its connection sat idle (pg_terminate_backend, a restart) as an InternalClientError on the next use.
RETRIED: tuple[type[BaseException], ...] = (
    DatabaseUnavailableError,
    asyncpg.exceptions.InternalClientError,
    *CONNECTION_ERRORS,
)
# Checking a work tree's HEAD must not hold a call up: a repository on a hung network mount reads as unknown.
GIT_TIMEOUT_SECONDS = 5.0


@asynccontextmanager
async def open_memory(
    settings: Settings | None = None, *, embedder: Embedder | None = None, **pool_overrides: object
) -> AsyncIterator[Memory]:
    """The memory on a started, migrated server; the pool and the embedder close on exit."""
    from mahavishnu_assets.database.server import open_database

    settings = settings or load_settings()
    db = await open_database(settings, migrate=True, **pool_overrides)
    memory = Memory(db, settings, embedder=embedder)
    try:
        yield memory
    finally:
        try:
            await memory.aclose()
        finally:
            await db.close()


class Memory:
    """Every operation of the memory, sharing one pool and one embedder (created on first use)."""

    def __init__(self, db: Database, settings: Settings, *, embedder: Embedder | None = None) -> None:
        self.db = db
        self.settings = settings
        self._embedder: QueryEmbedder | None = None if embedder is None else self._queries(embedder)
        self._own_embedder = embedder is None
        self._embedder_lock = asyncio.Lock()
        self._store: MemoryStore | None = None

    def _queries(self, embedder: Embedder) -> QueryEmbedder:
        o = self.settings.ollama
        return QueryEmbedder(embedder, o.timeout_seconds, batch_size=o.batch_size, in_flight=o.concurrency)

    async def embedder(self) -> Embedder:
        """The one embedder of this memory: every call ends within `ollama.timeout_seconds`, and concurrent
        queries share requests (search/query_embedder.py)."""
        if self._embedder is None:
            async with self._embedder_lock:
                if self._embedder is None:
                    from mahavishnu_assets.ingest.embed import make_embedder

                    # The `auto` choice asks Ollama whether it is there: a blocking request, off the loop.
                    self._embedder = self._queries(await asyncio.to_thread(make_embedder, self.settings))
        return self._embedder

    async def aclose(self) -> None:
        embedder, self._embedder = self._embedder, None
        if embedder is not None and self._own_embedder:
            await embedder.aclose()

    # -- code ----------------------------------------------------------------------------------------------
    async def search(
        self,
        query: str,
        *,
        repo: str | None = None,
        path_prefix: str | None = None,
        language: str | None = None,
        mode: str = "hybrid",
        k: int = 10,
        exact: bool = False,
        missing_repo: Literal["error", "empty"] = "error",
    ) -> dict[str, Any]:
        """`mahavishnu search`: results (repo, path, start_line, end_line, score, content, ...) and how they
        were found. An unknown `repo` raises NotFoundError, or with missing_repo="empty" gives no results."""
        from mahavishnu_assets import telemetry
        from mahavishnu_assets.search.core import MODES
        from mahavishnu_assets.search.filters import SearchFilters, check_k
        from mahavishnu_assets.search.service import search_text

        if mode not in MODES:
            raise SearchError(
                f"Unknown search mode {_shown(mode)}", suggestion=f"Use one of {', '.join(MODES)}."
            )
        check_k(k)
        query = check_query(query)
        filters = SearchFilters(repo=repo, path_prefix=path_prefix, language=language).validated()
        started = time.perf_counter()

        async def run() -> dict[str, Any]:
            embedder = await self.embedder() if mode != "text" else None
            return await search_text(
                self.db,
                self.settings,
                query,
                mode=mode,
                k=k,
                filters=filters,
                exact=exact,
                embedder=embedder,
            )

        result = await self._reading(run)
        if filters.repo is not None and not result["results"] and missing_repo == "error":
            await self._reading(lambda: self._repo_id(str(filters.repo)))
        attributes = {"mode": mode}
        telemetry.search_duration.record(time.perf_counter() - started, attributes)
        telemetry.search_results.record(len(result["results"]), attributes)
        return result

    async def find_symbol(self, name: str, *, repo: str | None = None) -> list[dict[str, Any]]:
        """Definitions of `name` (plain, or qualified as `Class.method`, `a::b`), exact matches first, then
        ignoring case, then by prefix: each with repo, path, start_line and end_line (the definition's whole
        extent), kind and symbol (the qualified name); at most 50."""
        name = check_symbol(name)
        if repo is not None:
            repo = check_name(repo, "repo")

        from mahavishnu_assets.search.symbols import find_symbols, symbol_query

        async def run() -> list[dict[str, Any]]:
            if repo is not None:
                await self._repo_id(repo)
            async with self.db.connection() as conn:
                hits = await find_symbols(conn, name, repo, k=MAX_SYMBOLS)
            # Definitions of the name itself when there are any; names it only begins otherwise.
            wanted = symbol_query(name).name.lower()
            named = [h for h in hits if wanted in (h.symbol.lower(), h.name.lower())]
            return [
                {
                    "repo": h.repo,
                    "path": h.path,
                    "start_line": h.start_line,
                    "end_line": h.end_line,
                    "kind": h.kind,
                    "symbol": h.symbol,
                }
                for h in named or hits
            ]

        return await self._reading(run)

    async def read_lines(self, repo: str, path: str, start_line: int, end_line: int) -> dict[str, Any]:
        """Lines start_line..end_line (1-based, inclusive) of a file as it was stored by the last ingest, never
        the file system: the chunks' lines joined by line number (lines no chunk holds are blank)."""
        repo = check_name(repo, "repo")
        path = check_path(path)
        start_line = _line_number(start_line, "start_line")
        end_line = _line_number(end_line, "end_line")
        if end_line < start_line:
            raise ArgumentError(
                f"end_line ({end_line}) is before start_line ({start_line})",
                suggestion="Give end_line >= start_line; both are inclusive.",
            )
        return await self._reading(lambda: self._stored_lines(repo, path, start_line, end_line))

    async def _stored_lines(self, repo: str, path: str, start_line: int, end_line: int) -> dict[str, Any]:
        async with (
            self.db.connection() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            file = await conn.fetchrow(
                """SELECT r.id AS repo_id, f.line_count, f.language, f.commit, f.path IS NOT NULL AS stored
                     FROM mahavishnu.repositories r
                     LEFT JOIN mahavishnu.source_files f ON f.repo_id = r.id AND f.path = $2
                    WHERE r.name = $1""",
                repo,
                path,
            )
            if file is None:
                raise _unknown_repo(repo)
            if not file["stored"]:
                reason = await conn.fetchval(
                    "SELECT reason FROM mahavishnu.skipped_files WHERE repo_id = $1 AND path = $2",
                    file["repo_id"],
                    path,
                )
                why = f" (it was skipped at ingest: {reason})" if reason else ""
                raise NotFoundError(
                    f"Repository {_shown(repo)} has no stored file {_shown(path)}{why}",
                    suggestion="Use a path relative to the repository root, as search results give it.",
                )
            count = int(file["line_count"])
            if end_line > count:
                raise ArgumentError(
                    f"Lines {start_line}-{end_line} are outside {_shown(path)}, which has {count} stored lines",
                    suggestion=f"Ask for lines within 1-{count}." if count else "The stored file is empty.",
                )
            rows = await conn.fetch(
                """SELECT start_line, content FROM mahavishnu.chunks
                    WHERE repo_id = $1 AND path = $2 AND start_line <= $4 AND end_line >= $3
                    ORDER BY start_line, chunk_index""",
                file["repo_id"],
                path,
                start_line,
                end_line,
            )
        lines = [""] * (end_line - start_line + 1)
        for row in rows:
            for offset, text in enumerate(row["content"].split("\n")):
                number = row["start_line"] + offset
                if start_line <= number <= end_line:
                    lines[number - start_line] = text
        return {
            "repo": repo,
            "path": path,
            "start_line": start_line,
            "end_line": end_line,
            "content": "\n".join(lines),
            "line_count": count,
            "language": file["language"],
            "commit": file["commit"],
        }

    async def list_repositories(self) -> list[dict[str, Any]]:
        """Every ingested repository: name, commit, files, chunks, last_ingested_at and stale (the work tree's
        HEAD is not the stored commit; None when that cannot be told, e.g. not a git work tree)."""
        rows = await self._reading(self._repository_rows)
        heads = await asyncio.gather(*(_work_tree_head(r["root_path"]) for r in rows))
        return [_repository(row, head) for row, head in zip(rows, heads, strict=True)]

    async def repository(self, name: str) -> dict[str, Any]:
        """One repository's summary: what list_repositories gives, plus its languages and skipped files."""
        name = check_name(name, "repo")
        rows = await self._reading(lambda: self._repository_rows(name))
        if not rows:
            raise _unknown_repo(name)

        async def details() -> tuple[list[asyncpg.Record], list[asyncpg.Record]]:
            async with self.db.connection() as conn:
                languages = await conn.fetch(
                    """SELECT language, count(*) AS files FROM mahavishnu.source_files WHERE repo_id = $1
                        GROUP BY language ORDER BY files DESC, language""",
                    rows[0]["id"],
                )
                skipped = await conn.fetch(
                    """SELECT reason, count(*) AS files FROM mahavishnu.skipped_files WHERE repo_id = $1
                        GROUP BY reason ORDER BY reason""",
                    rows[0]["id"],
                )
            return languages, skipped

        languages, skipped = await self._reading(details)
        out = _repository(rows[0], await _work_tree_head(rows[0]["root_path"]))
        out["languages"] = {r["language"]: int(r["files"]) for r in languages}
        out["skipped"] = {r["reason"]: int(r["files"]) for r in skipped}
        return out

    async def _repository_rows(self, name: str | None = None) -> list[asyncpg.Record]:
        async with self.db.connection() as conn:
            return await conn.fetch(
                """SELECT r.id, r.name, r.root_path, r.head_commit, r.last_ingested_at,
                          (SELECT count(*) FROM mahavishnu.source_files f WHERE f.repo_id = r.id) AS files,
                          (SELECT count(*) FROM mahavishnu.chunks c WHERE c.repo_id = r.id) AS chunks
                     FROM mahavishnu.repositories r
                    WHERE $1::text IS NULL OR r.name = $1
                    ORDER BY r.name""",
                name,
            )

    async def _repo_id(self, name: str) -> int:
        async with self.db.connection() as conn:
            repo_id = await conn.fetchval("SELECT id FROM mahavishnu.repositories WHERE name = $1", name)
        if repo_id is None:
            raise _unknown_repo(name)
        return int(repo_id)

    # -- memories and snapshots ----------------------------------------------------------------------------
    async def _memories(self) -> MemoryStore:
        if self._store is None:
            from mahavishnu_assets.memory.store import MemoryStore

            self._store = MemoryStore(self.db, self.settings, embedder=await self.embedder())
        return self._store

    async def remember(
        self, content: str, *, tags: Sequence[str] | None = None, agent: str | None = None
    ) -> int:
        """Store a memory (embedded for recall) with its tags and the agent or session that wrote it; its id."""
        content = _text(content, "content", MAX_MEMORY_CHARS)
        tag_list = check_tags(tags)
        if agent is not None:
            agent = _text(agent, "agent", MAX_AGENT_CHARS)
        store = await self._memories()
        # A write is never retried: after a lost connection nobody knows whether it committed.
        return await store.store_memory(content, "agent", metadata={"tags": tag_list, "agent": agent})

    async def recall(
        self, query: str, *, k: int = 10, tags: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """The k memories most similar to `query` (only those carrying every tag in `tags`): id, content, tags,
        agent, score (cosine similarity), memory_type, created_at."""
        query = check_query(query)
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= 1000:
            raise ArgumentError(f"k must be an integer from 1 to 1000, got {_shown(k)}")
        tag_list = check_tags(tags)
        store = await self._memories()
        rows = await self._reading(
            lambda: store.vector_search(query, k=k, metadata={"tags": tag_list} if tag_list else None)
        )
        return [
            {
                "id": r["id"],
                "content": r["content"],
                "tags": list((r["metadata"] or {}).get("tags") or []),
                "agent": (r["metadata"] or {}).get("agent"),
                "score": r["similarity"],
                "memory_type": r["memory_type"],
                "created_at": r["created_at"],
            }
            for r in rows
        ]

    async def snapshot_create(self, name: str | None = None) -> dict[str, Any]:
        """Take a snapshot of the memory and the corpus now (see memory/snapshots.py)."""
        from mahavishnu_assets.memory.snapshots import SnapshotManager

        if name is not None:
            name = _text(name, "name", MAX_NAME_CHARS)
        return await SnapshotManager(self.db, self.settings).create(name)

    async def snapshot_list(self, *, limit: int | None = None) -> list[dict[str, Any]]:
        """Snapshots, newest first."""
        from mahavishnu_assets.memory.snapshots import SnapshotManager

        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
            raise ArgumentError(f"limit must be a positive integer, got {_shown(limit)}")
        manager = SnapshotManager(self.db, self.settings)
        return await self._reading(lambda: manager.list_all(limit=limit))

    # -- plumbing ------------------------------------------------------------------------------------------
    async def _reading(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Run a read; once more when its connection died under it (a restarted server, a terminated
        backend): the pool replaces dead connections, so the second try normally succeeds."""
        try:
            return await operation()
        except PoolExhaustedError:
            raise
        except RETRIED as exc:
            logger.warning("database connection lost (%s); trying once more", exc.__class__.__name__)
        # The other idle connections died with this one: have the pool replace them all before the retry.
        await self.db.pool.expire_connections()
        try:
            return await operation()
        except PoolExhaustedError:
            raise
        except RETRIED[1:] as exc:
            raise DatabaseUnavailableError(
                f"The database connection failed twice ({exc.__class__.__name__})",
                suggestion="Check that PostgreSQL runs; the next call reconnects.",
            ) from None


# -- argument checks ---------------------------------------------------------------------------------------
def _shown(value: object, limit: int = 80) -> str:
    """A value as a message may quote it: repr, cut short (a huge argument must not become a huge error)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _text(value: object, what: str, max_chars: int) -> str:
    if not isinstance(value, str):
        raise ArgumentError(f"{what} must be text, not {type(value).__name__}")
    if not value.strip():
        raise ArgumentError(f"{what} is empty", suggestion=f"Pass a non-empty {what}.")
    if len(value) > max_chars:
        raise ArgumentError(f"{what} has {len(value)} characters; at most {max_chars} are allowed")
    if "\x00" in value:
        raise ArgumentError(f"{what} contains a NUL character", suggestion="Remove the NUL character.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ArgumentError(f"{what} is not valid Unicode text (it holds a lone surrogate)") from None
    return value


def check_query(query: object) -> str:
    """A search or recall query: non-empty text of at most MAX_QUERY_CHARS characters."""
    if not isinstance(query, str):
        raise SearchError(f"The query must be text, not {type(query).__name__}")
    if not query.strip():
        raise SearchError("The query is empty", suggestion="Pass the text to search for.")
    if len(query) > MAX_QUERY_CHARS:
        raise SearchError(
            f"The query has {len(query)} characters; at most {MAX_QUERY_CHARS} are allowed",
            suggestion="Search for the few words or the identifier that matter.",
        )
    return query


def check_name(value: object, what: str) -> str:
    return _text(value, what, MAX_NAME_CHARS)


_SYMBOL = re.compile(r"[^\W\d][\w$]*(?:(?:\.|::|#)[^\W\d][\w$]*)*|\$[\w$]*")


def check_symbol(value: object) -> str:
    name = _text(value, "name", MAX_NAME_CHARS).strip()
    if not _SYMBOL.fullmatch(name):
        raise ArgumentError(
            f"name {_shown(name)} is not an identifier",
            suggestion="Give a definition's name, plain (`open_memory`) or qualified (`Memory.search`).",
        )
    return name


def check_path(path: object) -> str:
    """A path relative to a repository's root, as stored; one that is absolute or climbs out is refused."""
    text = _text(path, "path", MAX_PATH_CHARS)
    if text.startswith(("/", "\\", "~")) or re.match(r"[A-Za-z]:[\\/]", text):
        raise ArgumentError(
            f"path {_shown(text)} is absolute",
            suggestion="Give the path relative to the repository root, e.g. src/app.py.",
        )
    if ".." in text.split("/") or ".." in text.split("\\"):
        raise ArgumentError(
            f"path {_shown(text)} leaves the repository",
            suggestion="Give a path inside the repository, relative to its root, without '..'.",
        )
    return "/".join(part for part in text.split("/") if part not in ("", "."))


def check_tags(tags: object) -> list[str]:
    if tags is None:
        return []
    if isinstance(tags, str) or not isinstance(tags, list | tuple):
        raise ArgumentError("tags must be a list of strings", suggestion='Pass e.g. ["design", "auth"].')
    if len(tags) > MAX_TAGS:
        raise ArgumentError(f"{len(tags)} tags given; at most {MAX_TAGS} are allowed")
    out: list[str] = []
    for tag in tags:
        tag = _text(tag, "a tag", MAX_TAG_CHARS).strip()
        if tag not in out:
            out.append(tag)
    return out


def _line_number(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ArgumentError(f"{what} must be an integer, not {type(value).__name__}")
    if value < 1:
        raise ArgumentError(f"{what} must be 1 or more (lines count from 1), got {value}")
    return value


def _unknown_repo(name: str) -> NotFoundError:
    return NotFoundError(
        f"No repository named {_shown(name)}",
        suggestion="List the ingested repositories (list_repositories, or `mahavishnu status`), or ingest it.",
    )


# -- repositories ------------------------------------------------------------------------------------------
async def _work_tree_head(root: str) -> str | None:
    """HEAD of the git work tree at `root`; None when it is not one (or git cannot tell in time)."""
    try:
        process = await asyncio.create_subprocess_exec(
            "git",
            "-C",
            root,
            "rev-parse",
            "--verify",
            "--quiet",
            "HEAD",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
    except OSError:
        return None
    try:
        async with asyncio.timeout(GIT_TIMEOUT_SECONDS):
            out, _ = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        return None
    head = out.decode("ascii", "replace").strip()
    return head if process.returncode == 0 and head else None


def _repository(row: asyncpg.Record, head: str | None) -> dict[str, Any]:
    commit = row["head_commit"]
    return {
        "name": row["name"],
        "commit": commit,
        "files": int(row["files"]),
        "chunks": int(row["chunks"]),
        "last_ingested_at": row["last_ingested_at"].isoformat() if row["last_ingested_at"] else None,
        "stale": None if commit is None or head is None else head != commit,
        "root_path": row["root_path"],
    }
