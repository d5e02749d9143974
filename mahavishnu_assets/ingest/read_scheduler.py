"""The reading scheduler of an ingest: files -> worker processes (or a thread) -> outcomes, in file order.

Files are handed out in slices. A big job reads in worker processes, so chunking never holds the GIL the event
loop needs for HTTP and database work; while those processes start (the fork server imports the code
parsers first, about a second), a thread reads the files that need no parser, so embedding starts at once.
What the thread has not reached when the processes are up goes to them. A pool that fails to start or dies
leaves the remaining slices to the thread: the run finishes rather than fails.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import AsyncGenerator, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from mahavishnu_assets.ingest import reader
from mahavishnu_assets.ingest.discover import Candidate
from mahavishnu_assets.ingest.reader import Outcome, ReadOptions

logger = logging.getLogger(__name__)

FIRST_SLICE_FILES = 8  # a small first slice (and batch) starts the embedding server early
SLICE_FILES = 24  # files per task handed to a reader worker


def slices(files: list[Candidate], first: int) -> list[list[Candidate]]:
    """`files` cut into a first slice of `first` files, then slices of SLICE_FILES."""
    out: list[list[Candidate]] = []
    for candidate in files:
        if not out or len(out[-1]) >= (first if len(out) == 1 else SLICE_FILES):
            out.append([])
        out[-1].append(candidate)
    return out


class ReadScheduler:
    """Reads files for one run: a process pool for a job of `files` files big enough, else one thread."""

    def __init__(self, options: ReadOptions, files: int, *, processes: int | None, min_files: int) -> None:
        self.options = options
        self._pool, self._workers = reader.make_pool(files, processes=processes, min_files=min_files)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mahavishnu-read")
        self._pool_ready: asyncio.Future[Executor] | None = None
        self.exhausted = False  # every slice is handed out
        self.waited = 0.0  # seconds spent waiting for outcomes

    def start(self) -> None:
        """Start the worker processes now, in the background: they can load while the run sets up."""
        if self._pool is not None and self._pool_ready is None:
            self._pool_ready = asyncio.ensure_future(self._start_pool(self._pool))

    async def _start_pool(self, pool: Executor) -> Executor:
        try:
            await asyncio.to_thread(reader.start_workers, pool, self._workers)
            return pool
        except BrokenProcessPool:
            logger.warning("Reader processes did not start; reading files in a thread")
            pool.shutdown(wait=False, cancel_futures=True)
            return self._thread

    async def outcomes(
        self, files: list[Candidate], same_as: dict[str, bytes]
    ) -> AsyncGenerator[list[Outcome], None]:
        """Each slice's outcomes, in order; `same_as` maps paths to stored hashes whose chunks are still valid."""
        loop = asyncio.get_running_loop()
        pending: deque[tuple[list[Candidate], dict[str, bytes], asyncio.Future[list[Outcome]]]] = deque()

        def read(
            part: list[Candidate], wanted: dict[str, bytes], on: Executor
        ) -> asyncio.Future[list[Outcome]]:
            return loop.run_in_executor(on, reader.read_slice, part, wanted, self.options)

        def hand(part: list[Candidate], on: Executor) -> None:
            wanted = {c.path: same_as[c.path] for c in part if c.path in same_as}
            pending.append((part, wanted, read(part, wanted, on)))

        early: deque[list[Candidate]] = deque()
        if self._pool is not None:
            self.start()
            early.extend(slices([c for c in files if reader.needs_no_parser(c.path)], FIRST_SLICE_FILES))
        early_paths = {c.path for part in early for c in part}
        rest = [c for c in files if c.path not in early_paths]
        queue: Iterator[list[Candidate]] = iter(slices(rest, SLICE_FILES if early else FIRST_SLICE_FILES))
        executor: Executor = self._thread
        workers = 1

        def hand_next() -> None:
            part = next(queue, None)
            if part is None:
                self.exhausted = True
            else:
                hand(part, executor)

        def hand_early() -> None:
            if early:
                hand(early.popleft(), self._thread)

        hand_early()
        hand_early()  # one slice at work, one waiting
        pool_ready = self._pool_ready
        if pool_ready is None:
            for _ in range(workers + 1):
                hand_next()
        try:
            while pending or pool_ready is not None:
                if pool_ready is not None and (pool_ready.done() or not pending):
                    executor = await pool_ready
                    pool_ready = None
                    workers = self._workers if executor is not self._thread else 1
                    queue = itertools.chain(list(early), queue)
                    early.clear()
                    for _ in range(workers + 1):
                        hand_next()
                    continue
                waited = time.perf_counter()
                try:
                    outcomes = await pending[0][2]
                except BrokenProcessPool:
                    # A worker died (killed, out of memory, or a __main__ it could not import): finish the job
                    # in the thread rather than fail it.
                    logger.warning("Reader processes failed; reading the remaining files in a thread")
                    executor.shutdown(wait=False, cancel_futures=True)
                    executor = self._thread
                    for i, (part, wanted, _) in enumerate(pending):
                        pending[i] = (part, wanted, read(part, wanted, executor))
                    continue
                self.waited += time.perf_counter() - waited
                pending.popleft()
                if pool_ready is None:
                    hand_next()
                else:
                    hand_early()
                yield outcomes
        finally:
            for _, _, future in pending:
                future.cancel()

    def close(self) -> None:
        """Stop reading: cancel what is not started, leave the workers to end on their own."""
        if self._pool_ready is not None:
            self._pool_ready.cancel()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._thread.shutdown(wait=False, cancel_futures=True)
