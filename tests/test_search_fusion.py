"""Weighted reciprocal rank fusion and the identifier test that picks hybrid's weights."""

from __future__ import annotations

import pytest

from mahavishnu_assets.ingest.word_form import STOP_WORDS
from mahavishnu_assets.search.fusion import looks_like_code, looks_like_identifier, rrf, spelled_names


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
    ],
)
def test_a_line_of_code_is_told_from_a_question(text: str, code: bool) -> None:
    assert looks_like_code(text) is code
