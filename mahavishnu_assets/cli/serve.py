"""`mahavishnu serve`: the MCP server, over stdio (default) or streamable HTTP (`--http HOST:PORT`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mahavishnu_assets.cli.output import SubParsers, subcommand


async def serve(args: argparse.Namespace) -> None:
    # Imported here: `mahavishnu --help` and the other commands never pay for the SDK.
    import sys

    from mahavishnu_assets.api import open_memory
    from mahavishnu_assets.mcp_server.http import (
        PATH,
        StaticTokenVerifier,
        check_binding,
        listen,
        parse_binding,
        resolve_token,
        serve_http,
    )
    from mahavishnu_assets.mcp_server.tools import build_server
    from mahavishnu_assets.settings import load_settings
    from mahavishnu_assets.telemetry import configure_from_environment

    settings = load_settings()
    binding = parse_binding(args.http) if args.http is not None else None
    listener = None
    token = None
    if binding is not None:
        token = resolve_token(settings.mcp_token, args.token_file)
        check_binding(binding, token)
        # Before the database: a taken port or a refused binding fails at once.
        listener = listen(binding)
    configure_from_environment()
    async with open_memory(settings) as memory:
        if binding is None or listener is None:
            server = build_server(memory)
            print("mahavishnu MCP server on stdio", file=sys.stderr, flush=True)
            await server.run_stdio_async()
            return None
        port = int(listener.getsockname()[1])
        server = build_server(
            memory,
            token_verifier=StaticTokenVerifier(token) if token is not None else None,
            issuer_url=binding.url(port),
        )
        guarded = " (bearer token required)" if token is not None else ""
        print(
            f"mahavishnu MCP server listening on {binding.url(port)}{PATH}{guarded}",
            file=sys.stderr,
            flush=True,
        )
        await serve_http(server, binding, listener)
    return None


def register(sub: SubParsers) -> None:
    p = subcommand(sub, "serve", serve, "serve the memory to agents over MCP (stdio, or HTTP with --http)")
    p.add_argument(
        "--http",
        metavar="HOST:PORT",
        default=None,
        help="streamable HTTP at http://HOST:PORT/mcp instead of stdio (HOST defaults to 127.0.0.1; "
        "beyond loopback a token is required)",
    )
    p.add_argument(
        "--token-file",
        type=Path,
        default=None,
        help="file holding the bearer token HTTP requests must carry (default: MAHAVISHNU_MCP_TOKEN)",
    )
