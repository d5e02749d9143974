"""Find files that hold secrets (keys, tokens, credentials) so they are never chunked, stored or logged.

Detection uses detect-secrets' maintained plugins. A plugin is skipped when the text holds none of the literals
its patterns require (derived from the patterns themselves, see secret_prefilter); otherwise its own patterns scan
the whole text in C and only lines that hit are analysed by the plugin itself. Noisy plugins (keyword
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

from mahavishnu_assets.ingest.secret_prefilter import Prefilter, fold, prefilter_for

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


@dataclass(frozen=True)
class Detector:
    """A detect-secrets plugin, its patterns compiled to scan a whole text, and the pre-filter derived from them."""

    plugin: Any
    patterns: tuple[re.Pattern[str], ...]
    prefilter: Prefilter

    @classmethod
    def of(cls, plugin: Any) -> Detector | None:
        """None for a plugin without patterns (the keyword and entropy heuristics)."""
        denylist = tuple(getattr(plugin, "denylist", ()))
        if not denylist:
            return None
        # Multi-line and kept apart: a pattern that starts with a literal is then found by a fast search for
        # that literal, which one alternation of them all prevents.
        keep = re.IGNORECASE | re.VERBOSE | re.DOTALL
        patterns = tuple(re.compile(p.pattern, (p.flags & keep) | re.MULTILINE) for p in denylist)
        return cls(plugin, patterns, prefilter_for(patterns))


@lru_cache(maxsize=8)
def detectors(names: tuple[str, ...]) -> tuple[Detector, ...]:
    """The named detect-secrets plugins (class names), ready to scan."""
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
        detector = Detector.of(cls())
        if detector is not None:
            out.append(detector)
    return tuple(out)


def find_secrets(
    text: str, plugins: tuple[str, ...] = DEFAULT_PLUGINS, *, limit: int = 1
) -> list[SecretFinding]:
    """Secrets in `text`, up to `limit` findings (one is enough to skip a file)."""
    return scan(text, detectors(plugins), limit=limit)


def scan(text: str, found_by: tuple[Detector, ...], *, limit: int = 1) -> list[SecretFinding]:
    """Secrets the detectors find in `text`, up to `limit` findings."""
    findings: list[SecretFinding] = []
    folded: str | None = None
    folding_done = False
    for detector in found_by:
        prefilter = detector.prefilter
        if prefilter.needs_fold and not folding_done:
            folded, folding_done = fold(text), True
        if not prefilter.passes_literals(text, folded):
            continue
        plugin = detector.plugin
        analysed: set[int] = set()  # line starts this plugin already judged (several patterns may hit one)
        for pattern, gate in zip(detector.patterns, prefilter.gates, strict=True):
            if not gate.admits(text, folded):
                continue
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
