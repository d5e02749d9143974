"""The MCP server's plain parts: where it listens, the token, and how content is cut to a limit."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from mahavishnu_assets.errors import ConfigurationError
from mahavishnu_assets.mcp_server.http import (
    Binding,
    StaticTokenVerifier,
    check_binding,
    parse_binding,
    resolve_token,
)
from mahavishnu_assets.mcp_server.tools import trim


@pytest.mark.parametrize(
    ("text", "host", "port", "loopback"),
    [
        ("127.0.0.1:8765", "127.0.0.1", 8765, True),
        ("8765", "127.0.0.1", 8765, True),
        (":0", "127.0.0.1", 0, True),
        ("localhost:1", "localhost", 1, True),
        ("[::1]:9000", "::1", 9000, True),
        ("0.0.0.0:8765", "0.0.0.0", 8765, False),
        ("[::]:8765", "::", 8765, False),
        ("10.1.2.3:80", "10.1.2.3", 80, False),
        ("example.org:80", "example.org", 80, False),
    ],
)
def test_bindings(text: str, host: str, port: int, loopback: bool) -> None:
    binding = parse_binding(text)
    assert (binding.host, binding.port, binding.loopback) == (host, port, loopback)


@pytest.mark.parametrize("text", ["abc", "127.0.0.1:", "127.0.0.1:70000", "host:-1"])
def test_bad_bindings(text: str) -> None:
    with pytest.raises(ConfigurationError, match="is not HOST:PORT"):
        parse_binding(text)


def test_beyond_loopback_needs_a_token() -> None:
    check_binding(Binding("127.0.0.1", 1), None)
    check_binding(Binding("0.0.0.0", 1), SecretStr("t"))
    with pytest.raises(ConfigurationError, match="without a bearer token"):
        check_binding(Binding("0.0.0.0", 1), None)
    with pytest.raises(ConfigurationError, match="without a bearer token"):
        check_binding(Binding("example.org", 1), None)


def test_token_sources(tmp_path: Path) -> None:
    assert resolve_token(None, None) is None
    assert resolve_token(SecretStr("env-token"), None) == SecretStr("env-token")
    (tmp_path / "token").write_text("file-token\n")
    assert resolve_token(SecretStr("env-token"), tmp_path / "token") == SecretStr("file-token")
    with pytest.raises(ConfigurationError, match="cannot be read"):
        resolve_token(None, tmp_path / "missing")
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigurationError, match="token is empty"):
        resolve_token(None, tmp_path / "empty")


async def test_the_verifier_accepts_only_the_token() -> None:
    verifier = StaticTokenVerifier(SecretStr("right-token"))
    accepted = await verifier.verify_token("right-token")
    assert accepted is not None and "right-token" not in accepted.model_dump_json()
    for other in ("wrong-token", "", "right-token ", "right-toke", "right-token\x00"):
        assert await verifier.verify_token(other) is None


def test_trim_cuts_at_a_line_end_and_keeps_the_range_exact() -> None:
    text = "one\ntwo\nthree\nfour"
    assert trim(text, 10, 13, 100) == (text, 13, False)
    assert trim(text, 10, 13, len(text)) == (text, 13, False)
    assert trim(text, 10, 13, 9) == ("one\ntwo", 11, True)
    assert trim(text, 10, 13, 7) == ("one\ntwo", 11, True)
    assert trim(text, 10, 13, 6) == ("one", 10, True)
    # A first line longer than the limit is the one cut inside a line.
    assert trim("abcdefgh\nij", 1, 2, 4) == ("abcd", 1, True)
