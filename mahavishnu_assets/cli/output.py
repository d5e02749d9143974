"""How every command prints: human text, or with --json one JSON object on the last line of stdout."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from mahavishnu_assets import telemetry
from mahavishnu_assets.errors import ConfigurationError, MahavishnuError, redact


# A handler returns its result, or None when it wrote its own output (a server on stdio).
class SubParsers(Protocol):
    """What `ArgumentParser.add_subparsers()` returns, as far as the command modules use it."""

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser: ...


Handler = Callable[[argparse.Namespace], Coroutine[Any, Any, dict[str, Any] | None]]
Renderer = Callable[[dict[str, Any]], str]


def add_common_options(parser: argparse.ArgumentParser, *, subcommand: bool = False) -> None:
    # A subcommand's parser sets no default of its own: it would override the flag given before the command.
    default: Any = argparse.SUPPRESS if subcommand else False
    parser.add_argument(
        "--json",
        action="store_true",
        default=default,
        help="print one JSON object as the last line of stdout",
    )
    parser.add_argument("-v", "--verbose", action="store_true", default=default, help="log more to stderr")


def _default_render(result: dict[str, Any]) -> str:
    lines = []
    for key, value in result.items():
        if isinstance(value, dict | list):
            value = json.dumps(value, default=str)
        lines.append(f"{key}: {value}")
    return "\n".join(lines)


def command(handler: Handler, render: Renderer | None = None) -> Callable[[argparse.Namespace], int]:
    """Wrap an async handler: run it, print its result, turn our errors into a one-line JSON error."""

    def run(args: argparse.Namespace) -> int:
        logging.basicConfig(
            level=logging.DEBUG if getattr(args, "verbose", False) else logging.WARNING,
            stream=sys.stderr,
            format="%(levelname)s %(name)s: %(message)s",
        )
        as_json = bool(getattr(args, "json", False))
        try:
            telemetry.configure_from_environment()
            result = asyncio.run(handler(args))
        except MahavishnuError as exc:
            return _fail(exc, as_json)
        except KeyboardInterrupt:
            return _fail(
                MahavishnuError("Interrupted", suggestion="Run the command again; work resumes."), as_json
            )
        except Exception as exc:
            err = MahavishnuError(
                f"Unexpected {exc.__class__.__name__}: {redact(str(exc))}",
                suggestion="Run again with --verbose and report the error if it persists.",
            )
            if getattr(args, "verbose", False):
                logging.exception("unexpected error")
            return _fail(err, as_json)
        if result is None:
            return 0
        if as_json:
            print(json.dumps(result, default=str, sort_keys=False))
        else:
            print((render or _default_render)(result))
        return 0

    return run


def _fail(exc: MahavishnuError, as_json: bool) -> int:
    payload = exc.to_dict()
    payload.pop("details", None) if not as_json else None
    if as_json:
        print(json.dumps(payload, default=str))
    else:
        print(f"error: {exc.message}\nsuggestion: {exc.suggestion}", file=sys.stderr)
    return 2 if isinstance(exc, ConfigurationError) else 1


def subcommand(
    sub: SubParsers,
    name: str,
    handler: Handler,
    help_text: str,
    render: Renderer | None = None,
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text)
    add_common_options(parser, subcommand=True)
    parser.set_defaults(handler=command(handler, render))
    return parser
