"""Read, classify and chunk slices of files: the CPU-heavy stage, run in worker processes on big jobs.

Functions here take and return plain picklable data, so the same code runs in a thread (small jobs) or in a
process pool (large ones, where chunking would otherwise hold the GIL the event loop needs for HTTP and
database work).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from mahavishnu_assets.ingest.chunk import ChunkOptions
from mahavishnu_assets.ingest.discover import (
    RACY_NANOSECONDS,
    Candidate,
    FileContent,
    FileStat,
    inspect_file,
)
from mahavishnu_assets.ingest.store import NewFile


@dataclass(frozen=True)
class ReadOptions:
    max_file_bytes: int
    max_line_chars: int
    detect_secrets: bool
    secret_plugins: tuple[str, ...] | None
    chunk: ChunkOptions


@dataclass
class Outcome:
    """One file's verdict: `skip` (with reason), `same` (bytes unchanged), or `file` (new rows)."""

    path: str
    kind: str
    stat: tuple[int | None, int | None, int | None]  # mtime_ns, ctime_ns, inode to store (None: racy)
    size: int
    reason: str | None = None
    file: NewFile | None = None


def stored_stat(stat: FileStat, read_at_ns: int) -> tuple[int | None, int | None, int | None]:
    if stat.mtime_ns >= read_at_ns - RACY_NANOSECONDS:
        return None, None, None
    return stat.mtime_ns, stat.ctime_ns, stat.inode


def read_slice(candidates: list[Candidate], same_as: dict[str, bytes], options: ReadOptions) -> list[Outcome]:
    """Verdicts for `candidates`; `same_as` maps paths to stored hashes whose chunks are still valid."""
    from mahavishnu_assets.ingest.chunk import analyze, detect_language, split_lines

    out: list[Outcome] = []
    for candidate in candidates:
        read_at = time.time_ns()
        result = inspect_file(
            candidate,
            max_file_bytes=options.max_file_bytes,
            max_line_chars=options.max_line_chars,
            detect_secrets=options.detect_secrets,
            secret_plugins=options.secret_plugins,
        )
        stat = stored_stat(candidate.stat, read_at)
        if isinstance(result, str):
            out.append(Outcome(candidate.path, "skip", stat, candidate.stat.size, reason=result))
            continue
        assert isinstance(result, FileContent)
        if same_as.get(candidate.path) == result.content_hash:
            out.append(Outcome(candidate.path, "same", stat, result.size))
            continue
        language = detect_language(candidate.path, result.text)
        analysis = analyze(result.text, language, options.chunk, path=candidate.path)
        new = NewFile(
            candidate.path,
            result.content_hash,
            language,
            result.size,
            len(split_lines(result.text)),
            stat[0],
            stat[1],
            stat[2],
            analysis.chunks,
            analysis.symbols,
        )
        out.append(Outcome(candidate.path, "file", stat, result.size, file=new))
    return out


def needs_no_parser(path: str) -> bool:
    """Chunked by line windows (judged by name alone): no llama-index or tree-sitter needed."""
    from mahavishnu_assets.ingest.chunk import _kind, detect_language

    return "." in path.rsplit("/", 1)[-1] and _kind(detect_language(path)) == "lines"


def _main_reimportable() -> bool:
    """Worker processes re-import the main script (a multiprocessing rule); a script read from stdin or deleted
    since cannot be, so such callers get a thread instead."""
    main = sys.modules.get("__main__")
    if main is None or getattr(main, "__spec__", None) is not None:
        return True
    path = getattr(main, "__file__", None)
    return path is None or os.path.isfile(path)


def _noop() -> None:
    return None


def start_workers(pool: Executor, workers: int) -> None:
    """Start every worker now (blocking: run it in a thread), so the event loop never waits on process start."""
    for future in [pool.submit(_noop) for _ in range(workers)]:
        future.result()


def _pool_size(files: int, processes: int | None, min_files: int) -> int:
    """Worker processes for reading `files` files, or 0 for one thread."""
    # As many workers as CPUs (at most 4): reading overlaps chunking, and the event loop mostly waits.
    workers = processes if processes is not None else max(1, min(4, os.cpu_count() or 2))
    return workers if workers > 0 and files >= min_files and _main_reimportable() else 0


def _context() -> Any:
    if "forkserver" in multiprocessing.get_all_start_methods():
        # A fork server (safe with threads, unlike fork) that imports the readers, llama-index's parsers and
        # the grammar wheels once, for every worker it forks.
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(
            [__name__, "llama_index.core.node_parser", "mahavishnu_assets.ingest.symbols"]
        )
        return context
    return multiprocessing.get_context("spawn")


def make_pool(files: int, *, processes: int | None, min_files: int) -> tuple[ProcessPoolExecutor | None, int]:
    """A process pool and its size for reading `files` files, or (None, 1) when one thread is enough."""
    workers = _pool_size(files, processes, min_files)
    if workers:
        return ProcessPoolExecutor(max_workers=workers, mp_context=_context()), workers
    return None, 1
