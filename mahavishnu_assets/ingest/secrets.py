"""Find files that hold secrets (keys, tokens, credentials) so they are never chunked, stored or logged.

Detection uses detect-secrets' maintained plugins. Each plugin's own patterns first scan the whole text in C
(fast: most files hit nothing); only lines that hit are analysed by the plugin itself. Noisy plugins (keyword
and high-entropy heuristics) are off by default: in source code they flag test fixtures and hashes everywhere.
What was found is reported by type only; the secret value never leaves this module.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import PurePosixPath
from typing import Any

# Plugins whose patterns are specific enough to run on source code. Names are detect-secrets class names.
DEFAULT_PLUGINS: tuple[str, ...] = (
    "AWSKeyDetector",
    "AzureStorageKeyDetector",
    "BasicAuthDetector",
    "DiscordBotTokenDetector",
    "GitHubTokenDetector",
    "GitLabTokenDetector",
    "JwtTokenDetector",
    "MailchimpDetector",
    "NpmDetector",
    "OpenAIDetector",
    "PrivateKeyDetector",
    "PypiTokenDetector",
    "SendGridDetector",
    "SlackDetector",
    "SquareOAuthDetector",
    "StripeDetector",
    "TwilioKeyDetector",
)

# Files that hold credentials by their nature, whatever their content looks like.
SECRET_FILE_PATTERNS: tuple[str, ...] = (
    ".env",
    ".env.*",
    "*.env",
    ".envrc",
    ".netrc",
    "_netrc",
    ".pgpass",
    ".pypirc",
    ".git-credentials",
    "id_rsa",
    "id_dsa",
    "id_ecdsa",
    "id_ed25519",
    "*.pem",
    "*.key",
    "*.p12",
    "*.pfx",
    "*.jks",
    "*.keystore",
    "credentials.json",
    "secrets.yaml",
    "secrets.yml",
)
# Templates of such files are meant to be committed and hold placeholders.
TEMPLATE_SUFFIXES: tuple[str, ...] = (".example", ".sample", ".template", ".dist", ".defaults", ".tmpl")

# Passwords in URLs that are documentation placeholders, not credentials (`scott:tiger` is the classic demo).
_PLACEHOLDER_PASSWORDS = frozenset(
    {
        "password",
        "passwd",
        "pass",
        "pwd",
        "secret",
        "changeme",
        "change_me",
        "tiger",
        "example",
        "xxx",
        "xxxx",
        "xxxxx",
        "xxxxxx",
        "test",
        "foo",
        "bar",
        "pw",
        "p",
        "x",
        "mypassword",
        "yourpassword",
        "your_password",
        "dbpass",
        "pat",
    }
)
# Cheap checks that must hold for a plugin's slow patterns to match at all: substrings of the lowercased text,
# or a fast regex (literal-led) on the text itself.
# A substring search is several times faster than the search for a literal that leads a regex, so plugins whose
# case-sensitive patterns all hold a literal are gated by it too.
_ANCHORS: dict[str, tuple[str, ...]] = {
    "AWSKeyDetector": ("a3t", "abia", "acca", "akia", "asia", "aws"),
    "SlackDetector": ("xox", "hooks.slack.com"),
    "PrivateKeyDetector": ("private key", "putty-user-key", "encrypted private"),
    "StripeDetector": ("k_live_",),
    "TwilioKeyDetector": ("ac", "sk"),
    "AzureStorageKeyDetector": ("accountkey=",),
    "BasicAuthDetector": ("://",),
    "GitHubTokenDetector": ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"),
    "JwtTokenDetector": ("eyj",),
    "NpmDetector": (":_authtoken=",),
    "OpenAIDetector": ("t3blbkfj",),
    "PypiTokenDetector": ("pypi-age",),
    "SquareOAuthDetector": ("sq0csp-",),
}
# Each regex starts with a literal, so it is found by a fast search for that literal (an alternation at the
# top of a pattern would be tried at every position instead).
_CORES: dict[str, tuple[re.Pattern[str], ...]] = {
    "DiscordBotTokenDetector": (re.compile(r"\.[a-zA-Z\d_-]{6}\.[a-zA-Z\d_-]{27}"),),
    "GitLabTokenDetector": (
        re.compile(r"gl(?:pat|dt|ft|soat|rt|cbt|imt|ptt|agent|oas)-"),
        re.compile(r"GR1348941"),
    ),
    "MailchimpDetector": (re.compile(r"-us[0-9]"),),
}
_TEMPLATED = re.compile(r"^(\$\{?.*\}?|\{\{?.*\}?\}|<[^>]*>|%\(?\w*\)?s|\*+|\.\.\.|\$\w+|%s|\{\w*\})$")


@dataclass(frozen=True)
class SecretFinding:
    """What kind of secret was found where (never its value)."""

    kind: str
    line: int


def is_secret_file(path: str) -> bool:
    """True for files such as `.env` or `id_rsa` that hold credentials by nature."""
    name = PurePosixPath(path).name
    if name.lower().endswith(TEMPLATE_SUFFIXES):
        return False
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in SECRET_FILE_PATTERNS)


def _is_placeholder(kind: str, value: str) -> bool:
    if kind != "Basic Auth Credentials":
        return False
    lowered = value.lower()
    return lowered in _PLACEHOLDER_PASSWORDS or bool(_TEMPLATED.match(value))


def _has_anchor(lowered: str, anchors: tuple[str, ...]) -> bool:
    # Anchors that share a first letter are found together, one regex scan instead of one scan each (AWS: three
    # times faster); otherwise each substring search is fastest alone.
    if len(anchors) > 2 and len({a[0] for a in anchors}) == 1:
        return _anchor_pattern(anchors).search(lowered) is not None
    return any(a in lowered for a in anchors)


@lru_cache(maxsize=16)
def _anchor_pattern(anchors: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join(map(re.escape, anchors)))


@lru_cache(maxsize=8)
def _plugins(names: tuple[str, ...]) -> list[tuple[Any, tuple[re.Pattern[str], ...]]]:
    """Each plugin with its own patterns, compiled multi-line and kept apart: a pattern that starts with a
    literal is then found by a fast search for that literal, which one alternation of them all prevents."""
    import importlib
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plugins_module = importlib.import_module("detect_secrets.core.plugins.util")
        by_name = {
            cls.__name__: cls for cls in plugins_module.get_mapping_from_secret_type_to_class().values()
        }
    out = []
    for name in names:
        cls = by_name.get(name)
        if cls is None:
            raise ValueError(f"Unknown detect-secrets plugin {name!r}")
        plugin = cls()
        keep = re.IGNORECASE | re.VERBOSE | re.DOTALL
        patterns = tuple(
            re.compile(p.pattern, (p.flags & keep) | re.MULTILINE) for p in getattr(plugin, "denylist", [])
        )
        if patterns:
            out.append((plugin, patterns))
    return out


def find_secrets(
    text: str, plugins: tuple[str, ...] = DEFAULT_PLUGINS, *, limit: int = 1
) -> list[SecretFinding]:
    """Secrets in `text`, up to `limit` findings (one is enough to skip a file)."""
    findings: list[SecretFinding] = []
    lowered = text.lower()
    for plugin, patterns in _plugins(plugins):
        name = type(plugin).__name__
        anchors = _ANCHORS.get(name)
        if anchors is not None and not _has_anchor(lowered, anchors):
            continue
        cores = _CORES.get(name)
        if cores is not None and not any(core.search(text) for core in cores):
            continue
        analysed: set[int] = set()  # line starts this plugin already judged (several patterns may hit one)
        for pattern in patterns:
            position = 0
            while len(findings) < limit:
                hit = pattern.search(text, position)
                if hit is None:
                    break
                line_start = text.rfind("\n", 0, hit.start()) + 1
                line_end = text.find("\n", hit.end())
                line_end = len(text) if line_end < 0 else line_end
                if line_start not in analysed:
                    analysed.add(line_start)
                    for value in plugin.analyze_string(text[line_start:line_end]):
                        if not _is_placeholder(plugin.secret_type, value):
                            line = text.count("\n", 0, line_start) + 1
                            findings.append(SecretFinding(plugin.secret_type, line))
                            break
                position = max(line_end, hit.end()) + 1
            if len(findings) >= limit:
                return findings
    return findings
