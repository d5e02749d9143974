"""The streamable HTTP transport: where to listen, the bearer token, and uvicorn over the SDK's ASGI app."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import SecretStr

from mahavishnu_assets.errors import ConfigurationError

if TYPE_CHECKING:
    from mcp.server.auth.provider import AccessToken
    from mcp.server.mcpserver import MCPServer

LOOPBACK = "127.0.0.1"
PATH = "/mcp"


@dataclass(frozen=True)
class Binding:
    host: str
    port: int

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False  # a host name other than localhost may resolve anywhere

    def url(self, port: int | None = None) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port if port is None else port}"


def parse_binding(text: str) -> Binding:
    """`HOST:PORT`, `[IPv6]:PORT`, `:PORT` or `PORT` (the last two on 127.0.0.1); port 0 picks a free one."""
    value = text.strip()
    host, _, port = value.rpartition(":") if ":" in value else ("", "", value)
    host = host.strip("[]") or LOOPBACK
    try:
        number = int(port)
    except ValueError:
        number = -1
    if not 0 <= number <= 65535:
        raise ConfigurationError(
            f"--http {text!r} is not HOST:PORT", suggestion="Use e.g. --http 127.0.0.1:8765."
        )
    return Binding(host, number)


def resolve_token(token: SecretStr | None, token_file: Path | None) -> SecretStr | None:
    """The bearer token: the file's content when a file is given, else MAHAVISHNU_MCP_TOKEN (settings)."""
    if token_file is not None:
        try:
            text = token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigurationError(
                f"The token file {token_file} cannot be read ({exc.__class__.__name__})",
                suggestion="Point --token-file at a readable file holding the token on one line.",
            ) from None
        token = SecretStr(text)
    if token is not None and not token.get_secret_value().strip():
        raise ConfigurationError(
            "The MCP bearer token is empty",
            suggestion="Set MAHAVISHNU_MCP_TOKEN (or --token-file) to a long random string, e.g. from "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`.",
        )
    return token


def check_binding(binding: Binding, token: SecretStr | None) -> None:
    """Refuse to serve beyond loopback without a token: anyone on the network could read and write."""
    if not binding.loopback and token is None:
        raise ConfigurationError(
            f"Refusing to serve MCP on {binding.host} without a bearer token",
            suggestion="Set MAHAVISHNU_MCP_TOKEN or pass --token-file, or bind 127.0.0.1.",
        )


def listen(binding: Binding) -> socket.socket:
    """The listening socket, opened before anything else starts so a taken port fails at once."""
    family = socket.AF_INET6 if ":" in binding.host else socket.AF_INET
    try:
        return socket.create_server((binding.host, binding.port), family=family, reuse_port=False)
    except OSError as exc:
        raise ConfigurationError(
            f"Cannot listen on {binding.url()} ({exc.strerror or exc.__class__.__name__})",
            suggestion="Choose another port, or stop what listens there.",
        ) from None


class StaticTokenVerifier:
    """The SDK's token verifier hook for one shared token, compared in constant time (as digests, so the
    length does not show either); the token itself is kept only as its digest."""

    def __init__(self, token: SecretStr) -> None:
        self._digest = _digest(token.get_secret_value())

    async def verify_token(self, token: str) -> AccessToken | None:
        from mcp.server.auth.provider import AccessToken

        if not hmac.compare_digest(_digest(token), self._digest):
            return None
        return AccessToken(token="bearer", client_id="mahavishnu", scopes=[])


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


async def serve_http(server: MCPServer, binding: Binding, listener: socket.socket) -> None:
    """Serve the SDK's streamable HTTP app at `PATH` on the open socket until SIGINT or SIGTERM."""
    import uvicorn

    app = server.streamable_http_app(streamable_http_path=PATH, host=binding.host)
    config = uvicorn.Config(
        app,
        host=binding.host,
        port=binding.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        # Tool calls are short; a client that stays connected keeps its session, an idle socket is closed.
        timeout_keep_alive=30,
    )
    await uvicorn.Server(config).serve(sockets=[listener])
