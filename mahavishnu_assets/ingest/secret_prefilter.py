"""Cheap tests a text must pass for a regular expression to match in it, read off the pattern itself.

A detect-secrets plugin's patterns are searched only in texts that pass these tests: a substring search is far
cheaper than a regex scan, and most files hold none of the literals. They are derived from the plugin's own
patterns at run time, so an upgrade that changes a pattern changes the pre-filter with it. The analysis is
conservative: a construct it does not fully understand yields no test, and a pattern without one lets every
text through to its plugin.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

# Literals shorter than this are in nearly every text: checking them first would only cost time.
MIN_LITERAL = 2
# Non-ASCII letters that re.IGNORECASE matches to ASCII letters (documented in the `re` module's reference,
# checked against the engine by the tests). Only the Kelvin sign lowers to its ASCII letter with str.lower().
_CASE_ODDITIES = ("\u0130", "\u0131", "\u017f")
_CLASS_ESCAPES = frozenset("dDwWsS")
_ZERO_WIDTH_ESCAPES = frozenset("bBAZ")
_CONTROL_ESCAPES = frozenset("afnrtv")
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}
_QUANTIFIER = re.compile(r"\{(\d*)(,\d*)?\}")


def fold(text: str) -> str | None:
    """`text` lowered: wherever re.IGNORECASE finds an ASCII literal in `text`, its lowercase is in the result.
    None when the text holds a letter for which that fails (then the regex engine decides)."""
    if not text.isascii() and any(odd in text for odd in _CASE_ODDITIES):
        return None
    return text.lower()


class Literals:
    """A set of substrings, tested in one or a few fast scans; `ignore_case` ones are lowercase ASCII."""

    def __init__(self, words: frozenset[str], *, ignore_case: bool) -> None:
        # A word holding another word of the set adds nothing: the shorter one is found wherever it is.
        self.words = tuple(sorted(w for w in words if not any(o != w and o in w for o in words)))
        self.ignore_case = ignore_case
        self._checks = tuple(_checks(self.words))

    def found_in(self, text: str, folded: str | None) -> bool:
        """Whether one of the words is in `text`; `folded` is fold(text), needed only when ignoring case."""
        haystack = text
        if self.ignore_case:
            if folded is None:
                return _ignore_case_pattern(self.words).search(text) is not None
            haystack = folded
        for check in self._checks:
            if (check in haystack) if isinstance(check, str) else (check.search(haystack) is not None):
                return True
        return False

    def __repr__(self) -> str:
        return f"Literals({self.words!r}, ignore_case={self.ignore_case})"


def _checks(words: tuple[str, ...]) -> list[str | re.Pattern[str]]:
    """One substring search per first character; words sharing it become one regex led by their common prefix,
    which the regex engine finds as fast as a substring (an alternation of unrelated words it cannot)."""
    groups: dict[str, list[str]] = {}
    for word in words:
        groups.setdefault(word[0], []).append(word)
    out: list[str | re.Pattern[str]] = []
    for group in groups.values():
        if len(group) == 1:
            out.append(group[0])
            continue
        prefix = _common_prefix(group)
        rests = "|".join(re.escape(w[len(prefix) :]) for w in group)
        out.append(re.compile(f"{re.escape(prefix)}(?:{rests})"))
    return out


def _common_prefix(words: list[str]) -> str:
    first, last = min(words), max(words)
    size = 0
    while size < len(first) and first[size] == last[size]:
        size += 1
    return first[:size]


@lru_cache(maxsize=64)
def _ignore_case_pattern(words: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join(map(re.escape, words)), re.IGNORECASE)


@dataclass(frozen=True)
class Gate:
    """What a text needs for one pattern to match in it: one of `literals`, and a match of `core` (the
    pattern from its first literal on, which a regex search finds fast). None: no such test."""

    literals: Literals | None
    core: re.Pattern[str] | None

    def admits(self, text: str, folded: str | None) -> bool:
        if self.literals is not None and not self.literals.found_in(text, folded):
            return False
        return self.core is None or self.core.search(text) is not None


@dataclass(frozen=True)
class Prefilter:
    """One gate per pattern, in order, and the union of their literals to turn most texts away at once."""

    gates: tuple[Gate, ...]
    exact: Literals | None
    folded: Literals | None
    # Whether a test ignores case, so that the caller passes fold(text).
    needs_fold: bool

    def passes_literals(self, text: str, folded: str | None) -> bool:
        """The quick test: False when no pattern's literal is in `text` (`folded` is fold(text))."""
        if self.exact is None and self.folded is None:
            return True
        if self.exact is not None and self.exact.found_in(text, folded):
            return True
        return self.folded is not None and self.folded.found_in(text, folded)

    def admits(self, text: str, folded: str | None) -> bool:
        """Whether any pattern may match in `text`; `folded` is fold(text) when needs_fold."""
        return self.passes_literals(text, folded) and any(gate.admits(text, folded) for gate in self.gates)


def prefilter_for(patterns: tuple[re.Pattern[str], ...]) -> Prefilter:
    """The gates of `patterns`; a text none of them admits cannot match any of the patterns."""
    gates = tuple(gate_for(p) for p in patterns)
    with_literals = [g.literals for g in gates if g.literals is not None]
    needs_fold = any(lits.ignore_case for lits in with_literals)
    if len(with_literals) < len(gates):
        # A pattern without literals: no union can turn a text away.
        return Prefilter(gates, None, None, needs_fold)
    exact = frozenset(w for lits in with_literals if not lits.ignore_case for w in lits.words)
    folded = frozenset(w for lits in with_literals if lits.ignore_case for w in lits.words)
    return Prefilter(
        gates,
        Literals(exact, ignore_case=False) if exact else None,
        Literals(folded, ignore_case=True) if folded else None,
        needs_fold,
    )


def gate_for(pattern: re.Pattern[str]) -> Gate:
    """The cheap tests for one compiled pattern."""
    if pattern.flags & re.LOCALE:
        return Gate(None, None)
    try:
        node = _Parser(pattern.pattern, verbose=bool(pattern.flags & re.VERBOSE)).parse()
    except _Unsupported:
        return Gate(None, None)
    literals = None
    found = _need(node)
    ignore_case = bool(pattern.flags & re.IGNORECASE)
    if found is not None and min(map(len, found)) >= MIN_LITERAL and (not ignore_case or _all_ascii(found)):
        literals = Literals(
            frozenset(w.lower() for w in found) if ignore_case else found, ignore_case=ignore_case
        )
    return Gate(literals, _core(pattern, node))


def required_literals(pattern: str, flags: int = 0) -> frozenset[str] | None:
    """Strings one of which every match of `pattern` contains, each at least MIN_LITERAL long; None if unknown."""
    gate = gate_for(re.compile(pattern, flags))
    return frozenset(gate.literals.words) if gate.literals is not None else None


def _all_ascii(words: frozenset[str]) -> bool:
    return all(w.isascii() for w in words)


def _core(pattern: re.Pattern[str], node: object) -> re.Pattern[str] | None:
    """The pattern from its first top-level literal on, when it starts with something else: wherever the
    pattern matches, this matches where that literal did, and a search for it is led by the literal."""
    if not isinstance(node, _Seq) or not node.items or isinstance(node.items[0], _Lit):
        return None
    for item, start in zip(node.items, node.starts, strict=True):
        if isinstance(item, _Lit):
            try:
                return re.compile(pattern.pattern[start:], pattern.flags)
            except re.error:
                return None
    return None


class _Unsupported(Exception):
    """A construct the analysis declines to reason about."""


# The parse tree: a literal character, something unknown (classes, dots, escapes not decoded, assertions), a
# repetition with its minimum count, a concatenation (with where each item starts) and an alternation.
@dataclass(frozen=True)
class _Lit:
    char: str


@dataclass(frozen=True)
class _Any:
    pass


@dataclass(frozen=True)
class _Repeat:
    node: object
    min: int


@dataclass(frozen=True)
class _Seq:
    items: tuple[object, ...]
    starts: tuple[int, ...]


@dataclass(frozen=True)
class _Alt:
    branches: tuple[object, ...]


def _need(node: object) -> frozenset[str] | None:
    """Strings one of which every match of `node` contains, or None."""
    if isinstance(node, _Lit):
        return frozenset({node.char})
    if isinstance(node, _Repeat):
        return _need(node.node) if node.min >= 1 else None
    if isinstance(node, _Alt):
        union: set[str] = set()
        for branch in node.branches:
            found = _need(branch)
            if found is None:
                return None
            union |= found
        return frozenset(union)
    if isinstance(node, _Seq):
        candidates: list[frozenset[str]] = []
        run: list[str] = []
        for item in node.items:
            if isinstance(item, _Lit):
                run.append(item.char)
                continue
            # Anything else ends the run of adjacent literal characters (ending one early is always safe).
            if run:
                candidates.append(frozenset({"".join(run)}))
                run = []
            found = _need(item)
            if found is not None:
                candidates.append(found)
        if run:
            candidates.append(frozenset({"".join(run)}))
        if not candidates:
            return None
        # The most selective: longest shortest member, then fewest members.
        return max(candidates, key=lambda c: (min(map(len, c)), -len(c)))
    return None


class _Parser:
    """A recursive-descent reader of Python's regex syntax that refuses what it does not know."""

    def __init__(self, pattern: str, *, verbose: bool) -> None:
        self.text = pattern
        self.pos = 0
        self.verbose = verbose

    def parse(self) -> object:
        node = self._alternation()
        if self.pos != len(self.text):
            raise _Unsupported("unbalanced parenthesis")
        return node

    def _peek(self) -> str | None:
        return self.text[self.pos] if self.pos < len(self.text) else None

    def _take(self) -> str:
        if self.pos >= len(self.text):
            raise _Unsupported("pattern ends early")
        char = self.text[self.pos]
        self.pos += 1
        return char

    def _alternation(self) -> object:
        branches: list[object] = [self._sequence()]
        while self._peek() == "|":
            self.pos += 1
            branches.append(self._sequence())
        return branches[0] if len(branches) == 1 else _Alt(tuple(branches))

    def _sequence(self) -> _Seq:
        items: list[object] = []
        starts: list[int] = []
        while (char := self._peek()) is not None and char not in "|)":
            if self.verbose and char.isspace():
                self.pos += 1
                continue
            if self.verbose and char == "#":
                end = self.text.find("\n", self.pos)
                self.pos = len(self.text) if end < 0 else end + 1
                continue
            starts.append(self.pos)
            atom = self._atom()
            low = self._quantifier()
            items.append(atom if low is None else _Repeat(atom, low))
        return _Seq(tuple(items), tuple(starts))

    def _atom(self) -> object:
        char = self._take()
        if char == "(":
            return self._group()
        if char == "[":
            self._skip_class()
            return _Any()
        if char in ".^$":
            return _Any()
        if char == "\\":
            return self._escape()
        if char in "*+?{":
            raise _Unsupported("quantifier without an atom")
        return _Lit(char)

    def _group(self) -> object:
        if self._peek() != "?":
            return self._close(self._alternation())
        self.pos += 1
        kind = self._take()
        if kind == ":":
            return self._close(self._alternation())
        if kind == "P" and self._peek() == "<":
            end = self.text.find(">", self.pos)
            if end < 0:
                raise _Unsupported("unterminated group name")
            self.pos = end + 1
            return self._close(self._alternation())
        if kind in "=!" or (kind == "<" and self._peek() in ("=", "!")):
            if kind == "<":
                self.pos += 1
            self._close(self._alternation())
            return _Any()  # an assertion consumes nothing: its literals need not be in the match
        # Inline flags, comments, conditionals, back-references, atomic groups: not worth the risk.
        raise _Unsupported(f"group (?{kind}")

    def _close(self, node: object) -> object:
        if self._take() != ")":
            raise _Unsupported("unbalanced parenthesis")
        return node

    def _skip_class(self) -> None:
        if self._peek() == "^":
            self.pos += 1
        if self._peek() == "]":
            self.pos += 1  # a leading ']' is a member
        while (char := self._take()) != "]":
            if char == "\\":
                self._take()
            elif char == "[" and self._peek() in (":", ".", "="):
                raise _Unsupported("POSIX-like class syntax")

    def _escape(self) -> object:
        char = self._take()
        if char in _CLASS_ESCAPES or char in _ZERO_WIDTH_ESCAPES or char in _CONTROL_ESCAPES:
            return _Any()
        if char in _HEX_ESCAPES:
            # The character they name is not decoded (it buys nothing here), but its digits are consumed.
            self.pos += _HEX_ESCAPES[char]
            if self.pos > len(self.text):
                raise _Unsupported("truncated escape")
            return _Any()
        if char.isalnum() or not char.isascii():
            raise _Unsupported(f"escape \\{char}")  # back-references, octal, \N{...}
        return _Lit(char)

    def _quantifier(self) -> int | None:
        """The minimum count of a quantifier after an atom, or None when there is none."""
        char = self._peek()
        if char is None:
            return None
        if char in "*?":
            low = 0
            self.pos += 1
        elif char == "+":
            low = 1
            self.pos += 1
        elif char == "{":
            found = _QUANTIFIER.match(self.text, self.pos)
            if found is None or not found.group(1) and found.group(2) in (None, ","):
                raise _Unsupported("brace that is not a quantifier")  # `{}` and `{,}` are literal text
            low = int(found.group(1) or 0)
            self.pos = found.end()
        else:
            return None
        if self._peek() in ("?", "+"):
            self.pos += 1  # lazy or possessive: they only ever match fewer strings
        if self._peek() in ("*", "+", "?", "{"):
            raise _Unsupported("repeated quantifier")
        return low
