"""Reciprocal rank fusion: combine ranked lists by rank alone, so scores of different scales never mix."""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

from mahavishnu_assets.ingest.word_form import ENGLISH_WORDS

T = TypeVar("T")

RRF_K = 60  # the constant of Cormack et al. (2009); dampens the weight of the very first ranks

# One name, maybe qualified (`get_secret_key`, `QuerySet.filter`, `Router::handle`, `Model#save`, `run()`).
_IDENTIFIER = re.compile(r"[A-Za-z_$][\w$]*(?:(?:\.|::|#)[A-Za-z_$][\w$]*)*(?:\(\))?")


def looks_like_identifier(text: str) -> bool:
    """Whether a query is a name rather than a description: one token shaped like a (qualified) identifier."""
    return _IDENTIFIER.fullmatch(text.strip()) is not None


_WORD = re.compile(r"[A-Za-z0-9]+")
# The longest run of words taken as one name: `get_random_secret_key` is four.
MAX_SPELLED_WORDS = 4
# Words a question holds, past which it is not worth reading for names.
MAX_SPELLING_WORDS = 32


# Signs of a line of code rather than a question: assignment, brackets, a call, statement ends, `self.`, arrows,
# a list of names in parentheses, a statement keyword (lower case, as code writes it) or a block header, and an
# SQL keyword in capitals opening the line.
_CODE = re.compile(
    r"[=;{}\[\]<>]|[A-Za-z_]\w*\(|\bself\.|->|::|\(\s*[\w.]+\s*,"
    r"|^\s*(?:def|class|import|from|return|raise|assert|yield|await|pass|break|continue|del|global|nonlocal)\b"
    r"|^\s*(?:if|elif|else|for|while|with|try|except|finally|async)\b.*:\s*$"
    r"|^\s*(?:SELECT|INSERT|UPDATE|DELETE|CREATE|ALTER|DROP|WITH|PRIMARY|FOREIGN|UNIQUE|REFERENCES|CONSTRAINT)\b"
)


# A text with a sign of code still reads as prose when it holds PROSE_WORDS English function words ("the",
# "that", "of"), or ends a sentence: "Dict-like get() that also supports optional domain and path args" and
# "Print object(s) supplied via positional arguments." are questions that name code. Lines of code hold few
# function words outside a comment or a string, and never end in a full stop.
PROSE_WORDS = 3
_SENTENCE_END = re.compile(r"[\w)\]`'\"][.?!]\s*$")
# A word standing alone between spaces, as prose writes it (`that`, `arguments.`); not a part of a name or a call
# (`test_the_words`, `before.get(key)`).
_PROSE_TOKEN = re.compile(r"([A-Za-z]{2,})[.,;:!?]?")


def reads_as_prose(text: str) -> bool:
    """Whether a text reads as English sentences, whatever signs of code it shows (see PROSE_WORDS)."""
    tokens = (_PROSE_TOKEN.fullmatch(token) for token in text.split())
    if sum(m is not None and m.group(1).lower() in ENGLISH_WORDS for m in tokens) >= PROSE_WORDS:
        return True
    return _SENTENCE_END.search(text) is not None and len(text.split()) >= 3


def looks_like_code(text: str) -> bool:
    """Whether a query is (a piece of) code: its words are calls and variables, not a description of a name."""
    return _CODE.search(text) is not None and not reads_as_prose(text)


# Test code by the conventions of the common languages: a folder of tests (`tests/`, `testing/`, `__tests__/`,
# `spec/`), or a file named as a test (`test_x.py`, `x_test.go`, `x.test.ts`, `x.spec.js`, `x_spec.rb`,
# `XTest.java`, `conftest.py`).
_TEST_PATH = re.compile(
    r"(?:^|/)(?:tests?|testing|__tests__|__mocks__|specs?)/"
    r"|(?:^|/)(?:test_[^/]*|[^/]*_(?:test|tests|spec)\.\w+|[^/]*\.(?:test|spec)\.\w+|[^/]*Tests?\.\w+|conftest\.py)$"
)
# Words of a question about tests: then tests are what it looks for.
_TEST_WORDS = re.compile(r"\b(?:test\w*|fixtures?|mocks?|pytest|unittest|conftest)\b", re.IGNORECASE)


def is_test_path(path: str) -> bool:
    """Whether a repository-relative path is test code (see _TEST_PATH)."""
    return _TEST_PATH.search(path) is not None


def asks_for_tests(text: str) -> bool:
    """Whether a question speaks of tests ("the test client", "fixtures for the database")."""
    return _TEST_WORDS.search(text) is not None


def spelled_names(text: str, stop_words: frozenset[str]) -> list[str]:
    """The names a question may spell: every run of 1 to MAX_SPELLED_WORDS adjacent words, lower case and run
    together (`get the color system` -> `colorsystem`, `getthe`...), longest runs first, a lone stop word left
    out. A definition's name compares the same way with its underscores removed, so `color_system` and
    `colorSystem` both match."""
    words = [w.lower() for w in _WORD.findall(text)[:MAX_SPELLING_WORDS]]
    runs = (
        words[i : i + n]
        for n in range(min(MAX_SPELLED_WORDS, len(words)), 0, -1)
        for i in range(len(words) - n + 1)
    )
    return list(dict.fromkeys("".join(run) for run in runs if len(run) > 1 or run[0] not in stop_words))


def rrf(
    lists: Sequence[Sequence[T]],
    key: Callable[[T], Hashable],
    tie: Callable[[T], tuple[object, ...]],
    *,
    k: int = RRF_K,
    limit: int | None = None,
    weights: Sequence[float] | None = None,
    prior: Callable[[T], float] | None = None,
    scales: Sequence[Callable[[T], float] | None] | None = None,
) -> list[tuple[T, float, list[int | None]]]:
    """Items of all lists by sum of weight/(k + rank), each term times the list's `scales` of the item when the
    list has one, the sum times `prior` of the item when given; best first, equal scores ordered by `tie`.

    Returns (item, fused score, rank in each list or None).
    """
    weights = list(weights) if weights is not None else [1.0] * len(lists)
    per_item = list(scales) if scales is not None else [None] * len(lists)
    scores: dict[Hashable, float] = {}
    first: dict[Hashable, T] = {}
    ranks: dict[Hashable, list[int | None]] = {}
    for which, ranked in enumerate(lists):
        for rank, item in enumerate(ranked, start=1):
            ident = key(item)
            if ident in ranks and ranks[ident][which] is not None:
                continue  # a duplicate inside one list counts once, at its best rank
            scale = per_item[which]
            weight = weights[which] * (scale(item) if scale is not None else 1.0)
            scores[ident] = scores.get(ident, 0.0) + weight / (k + rank)
            first.setdefault(ident, item)
            ranks.setdefault(ident, [None] * len(lists))[which] = rank
    if prior is not None:
        scores = {ident: score * prior(first[ident]) for ident, score in scores.items()}
    ordered = sorted(scores, key=lambda ident: (-scores[ident], tie(first[ident])))
    if limit is not None:
        ordered = ordered[:limit]
    return [(first[i], scores[i], ranks[i]) for i in ordered]
