"""The search-quality benchmark's plain parts: query sets, docstring blanking, the split, relevance and metrics."""

from __future__ import annotations

import ast
import textwrap

import pytest

from benchmarks.quality_sets import (
    Definition,
    Query,
    Target,
    blank_docstrings,
    build_query_sets,
    definitions,
    first_relevant_rank,
    first_sentence,
    locate_lines,
    relevant,
    score,
    select,
    split_of,
)

SOURCE = textwrap.dedent(
    '''\
    """Module docstring
    on two lines."""
    import functools


    class Engine:
        """Connects to a database and hands out connections."""

        @functools.cache
        def connect(self, url):
            """Open a new connection to the given database URL.

            More detail that is not part of the query.
            """
            return url

        def close(self):
            """Closed."""


    def helper(x): """Inline docstring for the helper function."""; return x


    def spread(): """Starts here
        and ends here."""; return 1


    def only_doc():
        """A function with nothing but a docstring in it."""
    '''
)


def test_blanking_keeps_every_line_number_and_removes_every_docstring() -> None:
    blanked = blank_docstrings(SOURCE)
    assert blanked.count("\n") == SOURCE.count("\n")
    before = {(d.name, d.start_line, d.end_line) for d in definitions("m.py", SOURCE)}
    after = definitions("m.py", blanked)
    assert {(d.name, d.start_line, d.end_line) for d in after} == before
    assert all(d.docstring is None for d in after)
    assert ast.get_docstring(ast.parse(blanked)) is None
    for word in (
        "Module",
        "Connects",
        "Open a new",
        "More detail",
        "Closed",
        "Inline",
        "Starts",
        "nothing but",
    ):
        assert word not in blanked
    # Lines holding only code are untouched; code sharing a line with a docstring stays.
    kept = [line for line in SOURCE.splitlines() if '"""' not in line and line.strip()]
    assert all(line in blanked.splitlines() for line in kept if "more detail" not in line.lower())
    assert "; return x" in blanked and "; return 1" in blanked


def test_blanking_handles_non_ascii_before_a_docstring_and_rejects_python_2() -> None:
    source = 'x = "é"; y = 1\ndef f(): """Déjà vu, the docstring."""; return "ü"\n'
    blanked = blank_docstrings(source)
    assert "Déjà" not in blanked and 'return "ü"' in blanked and 'x = "é"' in blanked
    with pytest.raises(ValueError, match="not Python 3"):
        blank_docstrings("print 'hello'\n")


def test_definitions_start_at_the_first_decorator_and_know_their_class() -> None:
    found = {d.name: d for d in definitions("m.py", SOURCE)}
    assert (found["connect"].start_line, found["connect"].end_line) == (9, 15)
    assert found["connect"].kind == "method" and found["connect"].owner == "Engine"
    assert found["helper"].kind == "function" and found["Engine"].kind == "class"


def test_query_sets() -> None:
    defs = definitions("pkg/m.py", SOURCE) + definitions(
        "tests/test_m.py",
        "def helper2():\n    '''A test helper with a long enough docstring.'''\n\nclass Other:\n    def close(self): pass\n",
    )
    sets = build_query_sets(defs)
    nl = {q.text: q.target for q in sets["nl"]}
    assert nl["Open a new connection to the given database URL."] == Target("pkg/m.py", 9, 15)
    assert "Closed." not in nl  # too short
    assert "A test helper with a long enough docstring." not in nl  # test code is never a target
    identifiers = {q.text for q in sets["identifier"]}
    assert {"Engine", "connect", "helper", "spread", "only_doc"} <= identifiers
    assert "close" not in identifiers  # defined twice (once in a test file)
    assert "helper2" not in identifiers  # only in test code
    qualified = {q.text for q in sets["qualified"]}
    assert qualified == {"Engine.connect", "Engine.close"}


def test_duplicate_sentences_are_dropped() -> None:
    doc = "Return the thing we need here."
    defs = [
        Definition("a.py", "f", "function", None, 1, 2, doc),
        Definition("b.py", "g", "function", None, 1, 2, doc),
        Definition("c.py", "h", "function", None, 1, 2, "Compute something else entirely, please."),
    ]
    assert [q.text for q in build_query_sets(defs)["nl"]] == ["Compute something else entirely, please."]


def test_first_sentence() -> None:
    assert first_sentence("Open it.  Then more.\n\nDetails.") == "Open it."
    assert first_sentence("\n    Spread over\n    two lines. Next one.\n") == "Spread over two lines."
    assert first_sentence("Uses e.g.foo and ends") == "Uses e.g.foo and ends"
    assert first_sentence("Is it? Yes.") == "Is it?"


def test_relevance_needs_the_file_and_half_of_the_shorter_range() -> None:
    t = Target("a.py", 10, 19)  # 10 lines
    assert relevant(t, "a.py", 10, 19)
    assert not relevant(t, "b.py", 10, 19)
    assert relevant(t, "a.py", 15, 30)  # overlap 5 of the shorter 10: half
    assert not relevant(t, "a.py", 16, 30)  # overlap 4
    assert relevant(t, "a.py", 1, 1000)  # the whole target inside a huge chunk
    assert relevant(t, "a.py", 19, 19)  # a one-line hit inside
    assert not relevant(t, "a.py", 20, 21)  # adjacent, no overlap
    assert relevant(t, "a.py", 18, 21)  # overlap 2 of the shorter 4
    assert not relevant(t, "a.py", 19, 22)  # overlap 1 of 4


def test_ranks_and_metrics() -> None:
    t = Target("a.py", 10, 19)
    hits = [("b.py", 10, 19), ("a.py", 30, 40), ("a.py", 12, 14), ("a.py", 10, 19)]
    assert first_relevant_rank(t, hits) == 3
    assert first_relevant_rank(t, hits, k=2) is None
    assert first_relevant_rank(t, []) is None
    s = score([1, 2, None, 4, 11])
    assert s.queries == 5
    assert s.mrr == pytest.approx((1 + 0.5 + 0.25) / 5)
    assert s.hit1 == pytest.approx(0.2) and s.hitk == pytest.approx(0.6)
    assert score([]).queries == 0
    assert score([None, None]).to_dict() == {"queries": 2, "mrr@10": 0, "hit@1": 0, "hit@10": 0}


def test_split_is_deterministic_balanced_and_follows_the_target() -> None:
    targets = [Target(f"pkg/m{i}.py", i, i + 5) for i in range(2000)]
    splits = [split_of(t) for t in targets]
    assert splits == [split_of(Target(t.path, t.start_line, t.end_line)) for t in targets]
    assert 900 < splits.count("report") < 1100
    queries = [Query(kind, f"{kind} {t.key()}", t) for t in targets for kind in ("nl", "identifier")]
    tune, report = select(queries, "tune", None), select(queries, "report", None)
    assert not {q.target for q in tune} & {q.target for q in report}
    assert len(tune) + len(report) == len(queries)
    # A cap takes a prefix of the same order: raising it only adds queries.
    assert select(queries, "report", 50) == report[:50]
    assert select(list(reversed(queries)), "report", 50) == report[:50]
    with pytest.raises(ValueError):
        select(queries, "all", None)


def test_locate_lines() -> None:
    text = "a\nb\nc\nb\nc\n"
    assert locate_lines(text, "b\nc") == (2, 3, 2)
    assert locate_lines(text, "b\nc", start_at=3) == (4, 5, 6)
    assert locate_lines(text, "\nc\n") == (3, 3, 4)
    assert locate_lines(text, "zzz") is None
    assert locate_lines(text, "") is None
