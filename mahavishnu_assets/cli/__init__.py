"""The `mahavishnu` command: one subcommand per file in this package."""

from __future__ import annotations

import argparse
import atexit
import gc
import os
import signal
import sys
import threading
import types
from typing import NoReturn

from mahavishnu_assets.cli import ingest, memory, pipeline, pydantic_plugins, search, serve, server
from mahavishnu_assets.cli.output import add_common_options

# The command's modules build no pydantic model when imported; the first is built after this.
pydantic_plugins.disable()

# Each module adds its subcommands (those in its COMMANDS); the order is the order of `mahavishnu --help`.
COMMAND_MODULES = [server, ingest, search, memory, pipeline, serve]
# What the other domains add to `mahavishnu status`, in this order. Each imports its machinery when status runs.
server.STATUS_EXTENSIONS[:] = [ingest.ingest_status, search.index_status, memory.pool_status]


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The command's parser. Given the arguments, only the module of the command they name adds its parsers:
    all of them cost about 7 ms of a 0.23 s command. Help, an unknown command or none gets them all."""
    parser = argparse.ArgumentParser(
        prog="mahavishnu", description="PostgreSQL + pgvector memory of code repositories."
    )
    add_common_options(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in _modules_for(argv):
        module.register(sub)
    return parser


def _modules_for(argv: list[str] | None) -> list[types.ModuleType]:
    # The top-level options take no value: the first other word is the command.
    named = next((arg for arg in argv or () if not arg.startswith("-")), None)
    chosen = [module for module in COMMAND_MODULES if named in module.COMMANDS]
    return chosen or COMMAND_MODULES


def _stoppable() -> None:
    """Take back the default SIGTERM when it arrives ignored.

    A parent that ignores SIGINT (any job a non-interactive shell starts with `&`) and ran Dagster in its main
    thread ignores SIGTERM too (Dagster maps SIGTERM to SIGINT's handler), and children inherit an ignored
    signal. Dagster stops the `tail` processes that mirror a run's logs with SIGTERM: ignored, they would
    outlive this command and hold its stdout open, so a caller reading it to the end would wait forever.
    """
    if signal.getsignal(signal.SIGTERM) == signal.SIG_IGN:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _pause_collection(seconds: float = 0.5) -> None:
    """No cyclic garbage collection while a command loads its code.

    Imports allocate in one burst: collecting during them finds next to nothing (83 passes freed 563 objects in
    an ingest's imports) and costs about 5% of a quick command. A timer, not the event loop, turns collection
    back on, so a command that blocks its loop still collects."""
    if not gc.isenabled():
        return
    gc.disable()
    timer = threading.Timer(seconds, gc.enable)
    timer.daemon = True
    timer.start()


def main(argv: list[str] | None = None) -> int:
    _stoppable()
    _pause_collection()
    parser = build_parser(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    return int(args.handler(args))


def run() -> NoReturn:
    """The `mahavishnu` command: `main`, then a quick exit."""
    _exit(main())


def _exit(code: int) -> NoReturn:
    """Exit without tearing the interpreter down when nothing is left to wait for.

    Once the output is written and the exit handlers have run, freeing every module of a process that loaded
    pydantic, asyncio and asyncpg takes about 30 ms, a tenth of a quick command (after a first ingest, with
    multiprocessing loaded, about 0.1 s), and changes nothing outside it. A thread still at work gets the
    normal exit, which waits for it; so does a worker process still alive once multiprocessing's exit handler
    (among those run here) has joined its children and released their semaphores."""
    busy = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if busy:
        sys.exit(code)
    atexit._run_exitfuncs()
    processes = sys.modules.get("multiprocessing")
    if processes is not None and processes.active_children():
        sys.exit(code)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        sys.exit(code)  # a closed or broken stream: let the normal exit report it
    os._exit(code)


if __name__ == "__main__":
    run()
