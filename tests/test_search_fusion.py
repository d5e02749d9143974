"""Weighted reciprocal rank fusion and the identifier test that picks hybrid's weights."""

from __future__ import annotations

import pytest

from mahavishnu_assets.ingest.word_form import STOP_WORDS
from mahavishnu_assets.search.fusion import (
    asks_for_tests,
    is_test_path,
    looks_like_code,
    looks_like_identifier,
    rrf,
    spelled_names,
)


def test_identifiers_and_sentences() -> None:
    for name in (
        "Database",
        "get_random_secret_key",
        "QuerySet.filter",
        "Router::handle",
        "Model#save",
        "run()",
    ):
        assert looks_like_identifier(name), name
    for text in ("open a database", "a.b c", "x = 1", "", "  ", "1abc", "SELECT * FROM t", "a..b"):
        assert not looks_like_identifier(text), text


def test_weights_scale_each_list() -> None:
    lists = [["a", "b"], ["b", "a"]]
    fused = rrf(lists, key=lambda x: x, tie=lambda x: (x,), k=1, weights=[1.0, 3.0])
    assert [item for item, _, _ in fused] == ["b", "a"]
    assert fused[0][1] == 1.0 / 3 + 3.0 / 2 and fused[0][2] == [2, 1]
    # A list weighted 0 ranks nothing up; its ranks are still reported.
    muted = rrf(lists, key=lambda x: x, tie=lambda x: (x,), k=1, weights=[0.0, 1.0])
    assert [item for item, _, _ in muted] == ["b", "a"] and muted[1][2] == [1, 2]
    # Unweighted: plain RRF, equal sums ordered by the tie key.
    assert [item for item, _, _ in rrf(lists, key=lambda x: x, tie=lambda x: (x,))] == ["a", "b"]


def test_a_prior_scales_the_fused_score_of_each_item() -> None:
    lists = [["a", "b"], ["b", "a"]]
    fused = rrf(lists, key=lambda x: x, tie=lambda x: (x,), k=1, prior=lambda x: 0.5 if x == "a" else 1.0)
    assert [item for item, _, _ in fused] == ["b", "a"]
    assert fused[1][1] == pytest.approx(0.5 * fused[0][1])
    # The cut comes after the prior: an item below the limit by rank alone can rise into it.
    deep = [["a", "b", "c"]]
    top = rrf(
        deep, key=lambda x: x, tie=lambda x: (x,), k=1, limit=1, prior=lambda x: 0.1 if x != "c" else 1.0
    )
    assert [item for item, _, _ in top] == ["c"]


def test_a_lists_scale_weighs_each_of_its_items() -> None:
    """A list's item weighs its rank's worth times its scale: a weak first item can fall below a strong second."""
    strength = {"a": 0.2, "b": 1.0}
    lists = [["a", "b"]]
    plain = rrf(lists, key=lambda x: x, tie=lambda x: (x,), k=10)
    scaled = rrf(lists, key=lambda x: x, tie=lambda x: (x,), k=10, scales=[strength.__getitem__])
    assert [item for item, _, _ in plain] == ["a", "b"]
    assert [item for item, _, _ in scaled] == ["b", "a"]
    assert scaled[0][1] == pytest.approx(1.0 / 12) and scaled[1][1] == pytest.approx(0.2 / 11)
    # Lists without a scale are untouched; ranks are reported as without scales.
    two = rrf(
        [["a"], ["a", "b"]], key=lambda x: x, tie=lambda x: (x,), k=10, scales=[None, strength.__getitem__]
    )
    assert two[0][1] == pytest.approx(1.0 / 11 + 0.2 / 11) and two[0][2] == [1, 1]


@pytest.mark.parametrize(
    ("path", "test"),
    [
        ("tests/test_make.py", True),
        ("test/orm/test_query.py", True),
        ("lib/sqlalchemy/testing/fixtures.py", True),
        ("src/app/__tests__/button.jsx", True),
        ("spec/models/user_spec.rb", True),
        ("pkg/server/handler_test.go", True),
        ("web/src/api.test.ts", True),
        ("web/src/api.spec.js", True),
        ("src/main/java/org/x/ParserTest.java", True),
        ("conftest.py", True),
        ("test_cli.py", True),
        ("src/attr/validators.py", False),
        ("rich/console.py", False),
        ("src/contest/latest.py", False),
        ("docs/testimonials.md", False),
        ("src/attestation.py", False),
    ],
)
def test_test_code_is_told_by_its_path(path: str, test: bool) -> None:
    assert is_test_path(path) is test


def test_a_question_about_tests_asks_for_them() -> None:
    assert asks_for_tests("Creates a test client for this application")
    assert asks_for_tests("fixtures for the database") and asks_for_tests("Mock the HTTP transport")
    assert not asks_for_tests("Check whether the latest attestation is valid")


def test_the_names_a_question_spells_longest_first_without_lone_stop_words() -> None:
    names = spelled_names("Get the color-system, of HTTPServer", STOP_WORDS)
    assert names[:2] == ["getthecolorsystem", "thecolorsystemof"]
    assert "colorsystem" in names and "httpserver" in names and "color" in names and "get" in names
    assert "the" not in names and "of" not in names
    assert names.index("colorsystem") < names.index("color")
    assert len(names) == len(set(names))
    assert spelled_names("", STOP_WORDS) == [] and spelled_names("?! ..", STOP_WORDS) == []
    # A pasted page is read for its first words only: the list stays small.
    assert len(spelled_names("word " * 10_000, STOP_WORDS)) == 4
    assert len(spelled_names(" ".join(f"w{i}" for i in range(10_000)), STOP_WORDS)) <= 4 * 32


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("Get the color system of the terminal.", False),
        ("Return a new :class:`_expression.Exists` construct", False),
        ("Render the speed in iterations per second.", False),
        ("mode = console.color_system()", True),
        ("return self._system", True),
        ("for item in range(3):", True),
        ("def encoding(self):", True),
        ("import os", True),
        ("let v: Vec<u8> = Vec::new();", True),
        ("Apply event handlers (used by Textual project).", False),
        ("If the console is a terminal, return its size.", False),
        ("For each row: the key and its value.", False),
        ("CREATE TABLE mahavishnu.lexical_repo_stats (", True),
        ("PRIMARY KEY (table_name, xid)", True),
        ("(repo_id, commit, space_id, status)", True),
        ("else:", True),
        ("if not found:", True),
        ("raise SearchError", True),
        ("assert hits", True),
        # Questions that name code: function words, or a sentence's end.
        (
            "Dict-like get() that also supports optional domain and path args in order to resolve collisions",
            False,
        ),
        ("Print object(s) supplied via positional arguments.", False),
        ("Optional[float]: Get the estimated speed in steps per second.", False),
        ("return a cache key.", False),
        ("x = compute(y)  # a comment", True),
        ("items = [a for a in b if a is not None]", True),
        ("foo(bar).", True),  # one word before the full stop: not a sentence
    ],
)
def test_a_line_of_code_is_told_from_a_question(text: str, code: bool) -> None:
    assert looks_like_code(text) is code
