"""Secret pre-filters are derived from detect-secrets' own patterns and never turn away a text they match."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mahavishnu_assets.ingest.secret_prefilter import fold, gate_for, prefilter_for, required_literals
from mahavishnu_assets.ingest.secrets import DEFAULT_PLUGINS, Detector, detectors, find_secrets, scan

EXAMPLES = settings(
    max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


def _plugin_class(name: str) -> type:
    return type(next(d.plugin for d in detectors(DEFAULT_PLUGINS) if type(d.plugin).__name__ == name))


def _every_pattern() -> list[tuple[str, int]]:
    return [(type(d.plugin).__name__, i) for d in detectors(DEFAULT_PLUGINS) for i in range(len(d.patterns))]


def test_most_default_plugins_get_a_literal_prefilter() -> None:
    # The pre-filter is what keeps scanning cheap; a detect-secrets change that leaves most plugins without a
    # literal would still be correct but slow, and should be noticed.
    gated = [d for d in detectors(DEFAULT_PLUGINS) if d.prefilter.exact or d.prefilter.folded]
    assert len(gated) >= len(DEFAULT_PLUGINS) - 2
    aws = next(d for d in detectors(DEFAULT_PLUGINS) if type(d.plugin).__name__ == "AWSKeyDetector")
    assert aws.prefilter.exact is not None and "AKIA" in aws.prefilter.exact.words


@pytest.mark.parametrize(("plugin", "index"), _every_pattern())
def test_every_match_of_a_plugin_pattern_passes_its_prefilter(plugin: str, index: int) -> None:
    """Strings generated to match the plugin's current pattern (by hypothesis, not by our analysis) all pass:
    if detect-secrets changes a pattern, the strings and the derived pre-filter change with it."""
    detector = next(d for d in detectors(DEFAULT_PLUGINS) if type(d.plugin).__name__ == plugin)
    pattern = detector.patterns[index]
    gate = detector.prefilter.gates[index]

    @EXAMPLES
    @given(st.from_regex(pattern))
    def check(text: str) -> None:
        assert pattern.search(text)
        folded = fold(text)
        assert detector.prefilter.passes_literals(text, folded), text
        assert gate.admits(text, folded), text
        assert detector.prefilter.admits(text, folded), text

    check()


def test_a_changed_pattern_moves_the_prefilter_with_it() -> None:
    aws = _plugin_class("AWSKeyDetector")
    key = "ZQXJ" + "7Q2W3E4R5T6Y7U8I"

    class Moved(aws):  # type: ignore[misc, valid-type]
        denylist = (re.compile(r"(?:ZQXJ|YQXJ)[0-9A-Z]{16}"),)

    class NoLiteral(aws):  # type: ignore[misc, valid-type]
        denylist = (re.compile(r"[J-Z]{4}[0-9A-Z]{16}"),)

    text = f"KEY = '{key}'\n"
    before = next(d for d in detectors(DEFAULT_PLUGINS) if type(d.plugin) is aws)
    assert not before.prefilter.passes_literals(text, fold(text))  # the old literals would turn it away
    moved = Detector.of(Moved())
    assert moved is not None and moved.prefilter.exact is not None
    assert moved.prefilter.exact.words == ("YQXJ", "ZQXJ")
    assert [f.kind for f in scan(text, (moved,))] == ["AWS Access Key"]
    # A pattern without a literal gets no literal test: every text reaches the plugin.
    loose = Detector.of(NoLiteral())
    assert loose is not None and loose.prefilter.exact is None and loose.prefilter.folded is None
    assert loose.prefilter.admits("no secret here", fold("no secret here"))
    assert [f.kind for f in scan(text, (loose,))] == ["AWS Access Key"]


@pytest.mark.parametrize(
    ("pattern", "flags", "expected"),
    [
        (r"AKIA[0-9A-Z]{16}", 0, {"AKIA"}),
        (r"(?:ab|cd)ef", 0, {"ef"}),
        (r"(?:abc|abd)x?", 0, {"abc", "abd"}),
        (r"xy(?:abc)?z", 0, {"xy"}),
        (r"(?:abc|)def", 0, {"def"}),
        (r"(?:abc|)", 0, None),  # one branch is empty
        (r"a{0,3}bc", 0, {"bc"}),
        (r"(?:ab){2,}", 0, {"ab"}),
        (r"key(?=secret)\d+", 0, {"key"}),  # a lookahead's text is not part of the match
        (r"(?<=ab)cd", 0, {"cd"}),
        (r"[]ab]cd\]e", 0, {"cd]e"}),
        (r"\x41\x42", 0, None),  # escapes are not decoded: no claim
        (r"a\.b\-c", 0, {"a.b-c"}),
        (r"(?i)secret", 0, None),  # inline flags: declined
        (r"(a)\1bc", 0, None),  # back-references: declined
        (r"ab{}cd", 0, None),  # a brace that is no quantifier: declined
        ("a b # comment\n c", re.VERBOSE, {"abc"}),
        (r"Token", re.IGNORECASE, {"token"}),
        (r"[MNO][a-z]{20}\.[a-z]{6}", 0, None),  # one-character literals are useless
    ],
)
def test_required_literals(pattern: str, flags: int, expected: set[str] | None) -> None:
    found = required_literals(pattern, flags)
    assert (set(found) if found is not None else None) == expected


SYNTHETIC = [
    r"(?:ab|cd)ef[0-9]+",
    r"x(?:abc|abd)+y?z",
    r"pre(?:fix)?-[a-f]{3}",
    r"(?P<n>tok|key)_[A-Z]{2}(?!x)",
    r"a+b*c?dd",
    r"(?:(?:gl|GR)pat|abc)-\d",
    r"[^:]+://[^@]+@h",
    r"\.[a-z]{3}\.q",
    r"ab(?:cdefg)?h[0-9]",  # the longest literal is optional
    r"q(?:longword|other)*(?:alpha|be)",
    r"(?:one|two|three)(?:four|)x",
]


@pytest.mark.parametrize("pattern", SYNTHETIC)
@pytest.mark.parametrize("flags", [0, re.IGNORECASE])
def test_gates_admit_every_match_of_synthetic_patterns(pattern: str, flags: int) -> None:
    compiled = re.compile(pattern, flags)
    gate = gate_for(compiled)
    prefilter = prefilter_for((compiled,))
    assert gate.literals is not None or gate.core is not None

    @EXAMPLES
    @given(st.from_regex(compiled))
    def check(text: str) -> None:
        assert compiled.search(text)
        assert gate.admits(text, fold(text)), text
        assert prefilter.admits(text, fold(text)), text

    check()


def test_fold_knows_every_letter_ignorecase_equates_with_ascii() -> None:
    """fold() relies on str.lower() except for a few letters; the regex engine itself says which."""
    every = "".join(chr(c) for c in range(0x80, 0x110000) if not 0xD800 <= c <= 0xDFFF)
    for char in set(re.findall("[a-z]", every, re.IGNORECASE)):
        lowered = char.lower()
        assert fold(char) is None or (len(lowered) == 1 and lowered.isascii()), hex(ord(char))


def test_case_insensitive_literals_are_found_behind_unusual_letters() -> None:
    secret = "".join("Zq9/" for _ in range(10))
    # LATIN SMALL LETTER LONG S matches `s` under re.IGNORECASE but does not lower to it.
    text = f"aw\u017f_password = '{secret}'\n"
    assert re.search("aws", text, re.IGNORECASE)
    assert [f.kind for f in find_secrets(text)] == ["AWS Access Key"]
    kelvin = f"\u212aEY = 'x'\naws_token = '{secret}'\n"
    assert [f.kind for f in find_secrets(kelvin)] == ["AWS Access Key"]
