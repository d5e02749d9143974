"""The `mahavishnu` command: one subcommand per file in this package."""

from __future__ import annotations

import argparse
import signal
import sys
from typing import NoReturn

from mahavishnu_assets.cli import ingest, memory, pipeline, search, serve, server
from mahavishnu_assets.cli.output import add_common_options

# Each module adds its subcommands; the order is the order of `mahavishnu --help`.
COMMAND_MODULES = [server, ingest, search, memory, pipeline, serve]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mahavishnu", description="PostgreSQL + pgvector memory of code repositories."
    )
    add_common_options(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def _stoppable() -> None:
    """Take back the default SIGTERM when it arrives ignored.

    A parent that ignores SIGINT (any job a non-interactive shell starts with `&`) and ran Dagster in its main
    thread ignores SIGTERM too (Dagster maps SIGTERM to SIGINT's handler), and children inherit an ignored
    signal. Dagster stops the `tail` processes that mirror a run's logs with SIGTERM: ignored, they would
    outlive this command and hold its stdout open, so a caller reading it to the end would wait forever.
    """
    if signal.getsignal(signal.SIGTERM) == signal.SIG_IGN:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def main(argv: list[str] | None = None) -> int:
    _stoppable()
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


def run() -> NoReturn:
    """The `mahavishnu` command."""
    sys.exit(main())


if __name__ == "__main__":
    run()
