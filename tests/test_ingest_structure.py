"""Structure-aware chunking and symbols: properties over generated Python, definitions in every grammar."""

from __future__ import annotations

import ast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mahavishnu_assets.ingest.chunk import ChunkOptions, analyze, chunk_hash, chunk_text, split_lines
from mahavishnu_assets.ingest.structure import nonspace_prefix
from mahavishnu_assets.ingest.symbols import Symbol, _python_candidates, _query_candidates, parse

OPTIONS = ChunkOptions(max_chunk_chars=300, min_chunk_lines=4)
BUDGET = OPTIONS.code_budget

NAMES = st.sampled_from(["alpha", "beta", "gamma", "delta", "get_value", "Handler", "run", "parse_item"])
TEXTS = st.text(alphabet="abcdefghij klmnop_0123456789", min_size=0, max_size=70)


def _block(draw: st.DrawFn, depth: int, indent: str) -> list[str]:
    """Statements of a block at `indent`: simple ones, comments, blank lines, nested compound statements."""
    kinds = ["assign", "call", "comment", "blank", "long"]
    if depth < 3:
        kinds += ["if", "for", "def", "class", "decorated"]
    out: list[str] = []
    for _ in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(kinds))
        name = draw(NAMES)
        if kind == "assign":
            out.append(f"{indent}{name}_{draw(st.integers(0, 99))} = {draw(TEXTS)!r}")
        elif kind == "call":
            out.append(f"{indent}{name}({draw(TEXTS)!r}, {draw(st.integers())})")
        elif kind == "comment":
            out.append(f"{indent}# {draw(TEXTS)}")
        elif kind == "blank":
            out.append("")
        elif kind == "long":
            items = draw(st.lists(TEXTS, min_size=2, max_size=8))
            out += [f"{indent}{name} = ["] + [f"{indent}    {t!r}," for t in items] + [f"{indent}]"]
        elif kind in ("if", "for"):
            head = f"if {name}:" if kind == "if" else f"for item in {name}:"
            out += [f"{indent}{head}", *_block(draw, depth + 1, indent + "    ")]
        else:
            decorators = [f"{indent}@{draw(NAMES)}"] * (kind == "decorated") * draw(st.integers(1, 2))
            comment = [f"{indent}# {draw(TEXTS)}"] if draw(st.booleans()) else []
            head = (
                f"class {name.title()}:" if kind == "class" else f"def {name}(self, value={draw(TEXTS)!r}):"
            )
            doc = [f'{indent}    """{draw(TEXTS)}."""'] if draw(st.booleans()) else []
            out += [*comment, *decorators, f"{indent}{head}", *doc, *_block(draw, depth + 1, indent + "    ")]
    if not any(line.strip() and not line.strip().startswith("#") for line in out):
        out.append(f"{indent}pass")
    return out


@st.composite
def python_sources(draw: st.DrawFn) -> str:
    return "\n".join(_block(draw, 0, "")) + ("\n" if draw(st.booleans()) else "")


def _nonspace(text: str) -> int:
    return sum(not c.isspace() for c in text)


def _definitions(tree: ast.Module) -> list[tuple[str, ast.AST]]:
    """(qualified name, node) of every def and class, as `ast` sees them."""
    out: list[tuple[str, ast.AST]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}.{child.name}" if prefix else child.name
                out.append((name, child))
                visit(child, name)
            else:
                visit(child, prefix)

    visit(tree, "")
    return out


def _note_start(lines: list[str], start: int) -> int:
    """The first of the comment lines right above line `start` at its indentation (else `start`)."""

    def indent(line: str) -> int:
        return len(line) - len(line.lstrip())

    n = start
    while (
        n > 1 and lines[n - 2].lstrip().startswith("#") and indent(lines[n - 2]) == indent(lines[start - 1])
    ):
        n -= 1
    return n


def _chunk_of(chunks: list, line: int) -> int:
    return next(i for i, c in enumerate(chunks) if c.start_line <= line <= c.end_line)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=python_sources())
def test_python_chunks_are_exact_complete_sized_and_keep_headers(source: str) -> None:
    tree = ast.parse(source)
    lines = split_lines(source)
    analysis = analyze(source, "python", OPTIONS, path="pkg/mod.py")
    chunks = analysis.chunks
    # Exact whole lines, in order, no overlap, every non-blank line covered.
    covered: list[int] = []
    for i, chunk in enumerate(chunks):
        assert chunk.index == i
        assert "\n".join(lines[chunk.start_line - 1 : chunk.end_line]) == chunk.content
        assert lines[chunk.start_line - 1].strip() and lines[chunk.end_line - 1].strip()
        assert chunk.content_hash == chunk_hash(chunk.document)
        covered += range(chunk.start_line, chunk.end_line + 1)
    assert covered == sorted(set(covered))
    assert {n for n, line in enumerate(lines, 1) if line.strip()} <= set(covered)
    prefix = nonspace_prefix(lines)

    def size(start: int, end: int) -> int:
        return prefix[end] - prefix[start - 1]

    for i, chunk in enumerate(chunks):
        # Within the hard limit (the budget plus what absorbing a small piece may add), but for the one line a
        # header that nearly fills it must take along...
        total = size(chunk.start_line, chunk.end_line)
        assert _nonspace(chunk.content) == total
        assert total <= BUDGET.hard or total - size(chunk.end_line, chunk.end_line) <= BUDGET.hard
        # ...and no chunk under min_lines lines unless no neighbour could take it within that limit.
        if chunk.end_line - chunk.start_line + 1 < BUDGET.min_lines and len(chunks) > 1:
            if i > 0:
                assert size(chunks[i - 1].start_line, chunk.end_line) > BUDGET.hard
            if i + 1 < len(chunks):
                assert size(chunk.start_line, chunks[i + 1].end_line) > BUDGET.hard
    definitions = _definitions(tree)
    for _, node in definitions:
        assert isinstance(node, ast.FunctionDef | ast.ClassDef)
        # No orphan header: decorators, the def line and the body's first line are in one chunk...
        first = node.decorator_list[0].lineno if node.decorator_list else node.lineno
        assert (
            _chunk_of(chunks, first)
            == _chunk_of(chunks, node.lineno)
            == _chunk_of(chunks, node.body[0].lineno)
        )
        # ...and so are the comments right above.
        assert _chunk_of(chunks, _note_start(lines, first)) == _chunk_of(chunks, first)
    # Symbols: every def and class, with its qualified name, kind and lines (decorators included; comments
    # indented under its last statement are its own too, which `ast` does not count).
    expected = {
        (
            name,
            "class" if isinstance(node, ast.ClassDef) else "function",
            node.decorator_list[0].lineno if node.decorator_list else node.lineno,
        ): node.end_lineno
        for name, node in definitions
        if isinstance(node, ast.FunctionDef | ast.ClassDef)
    }
    found = {
        (s.qualified_name, "function" if s.kind == "method" else s.kind, s.start_line): s.end_line
        for s in analysis.symbols
    }
    assert found.keys() == expected.keys()
    for key, end in found.items():
        assert end >= (expected[key] or 0)
        assert all(not line.strip() or line.lstrip().startswith("#") for line in lines[expected[key] : end])
    # A chunk's symbol is the innermost definition holding all of it (with the comments right above it).
    for chunk in chunks:
        holding = [
            (s.qualified_name, s.start_line)
            for s in analysis.symbols
            if _note_start(lines, s.start_line) <= chunk.start_line and chunk.end_line <= s.end_line
        ]
        assert chunk.symbol == (max(holding, key=lambda pair: pair[1])[0] if holding else None)
        # Its names: the definitions beginning in it, by first line (lexical search weighs them).
        by_line = sorted(analysis.symbols, key=lambda s: s.start_line)
        beginning = [s.name for s in by_line if chunk.start_line <= s.start_line <= chunk.end_line]
        assert chunk.names == (" ".join(beginning) or None)
    # Deterministic.
    assert analyze(source, "python", OPTIONS, path="pkg/mod.py") == analysis


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=python_sources())
def test_the_python_walk_finds_what_the_query_finds(source: str) -> None:
    """Python definitions come from a walk over statements only; the grammar query over every node agrees."""
    for text in (source, source.replace(":", "", 1), "class {\n" + source):  # broken ones too
        tree = parse(text.encode(), "python")
        walked = sorted((d.start_byte, n.start_byte) for d, n in _python_candidates(tree.root_node))
        queried = sorted((d.start_byte, n.start_byte) for d, n in _query_candidates(tree.root_node, "python"))
        assert walked == queried


def test_a_small_file_is_one_chunk_and_a_big_one_is_split_on_definitions() -> None:
    small = "import os\n\nX = 1\n"
    assert [(c.start_line, c.end_line) for c in chunk_text(small, "python")] == [(1, 3)]
    functions = [
        f"def function_{i}(value):\n    '''Docstring {i}.'''\n    total = value * {i}\n    return total\n"
        for i in range(40)
    ]
    source = "\n".join(functions)
    chunks = chunk_text(source, "python", ChunkOptions(max_chunk_chars=300))
    assert len(chunks) >= 8
    # Small siblings are merged up to the budget; chunks start at definitions.
    assert all(c.content.startswith("def ") for c in chunks)
    assert all(c.content.count("def ") >= 2 for c in chunks[:-1])


def test_a_method_split_across_chunks_carries_its_signature_in_the_later_chunks() -> None:
    body = "\n".join(f"        step_{i} = compute_something(value, {i}, 'label {i}')" for i in range(60))
    source = (
        "class QuerySet:\n"
        '    """Rows."""\n\n'
        "    def filter(self, *args, **kwargs):\n"
        '        """Keep matching rows."""\n'
        f"{body}\n"
        "        return self\n"
    )
    chunks = chunk_text(source, "python", ChunkOptions(max_chunk_chars=600), path="db/query.py")
    assert len(chunks) >= 3
    first, later = chunks[0], chunks[1:]
    assert first.content.startswith("class QuerySet:") and "def filter(" in first.content
    assert first.context == "File: db/query.py (python)\nSymbol: QuerySet"
    for chunk in later:
        assert chunk.symbol == "QuerySet.filter"
        assert chunk.context == (
            "File: db/query.py (python)\nSymbol: QuerySet.filter\nInside: def filter(self, *args, **kwargs):"
        )
        assert chunk.document == chunk.context + "\n" + chunk.content


def test_the_same_lines_in_two_places_hash_apart_and_only_changed_chunks_change() -> None:
    source = "def shared():\n    return 1\n    # tail\n    # more\n"
    a = chunk_text(source, "python", path="a.py")
    b = chunk_text(source, "python", path="b.py")
    assert [c.content for c in a] == [c.content for c in b]
    assert a[0].content_hash != b[0].content_hash
    many = "\n\n".join(f"def f{i}(x):\n    y = x * {i}\n    z = y + {i}\n    return z" for i in range(30))
    before = chunk_text(many, "python", ChunkOptions(max_chunk_chars=200), path="m.py")
    after = chunk_text(
        many.replace("y = x * 17", "y = x * 71"), "python", ChunkOptions(max_chunk_chars=200), path="m.py"
    )
    changed = {c.content_hash for c in after} - {c.content_hash for c in before}
    assert len(before) == len(after) > 3 and len(changed) == 1


def test_closing_brackets_and_lone_lines_join_a_neighbour() -> None:
    source = (
        "function big(a) {\n"
        + "".join(f"  const value{i} = compute(a, {i}, 'some label text {i}');\n" for i in range(40))
        + "}\n"
        + "const x = 1;\n"
    )
    chunks = chunk_text(source, "javascript", ChunkOptions(max_chunk_chars=400))
    assert len(chunks) >= 3
    assert all(c.end_line - c.start_line + 1 >= 4 for c in chunks)
    assert chunks[0].content.startswith("function big(a) {")
    assert chunks[-1].content.endswith("}\nconst x = 1;")


def test_text_inside_a_node_that_no_child_holds_is_cut_like_any_other() -> None:
    # A long string whose only children are two escape sequences, its end sharing a line with a comment.
    prose = [f"Line {i} of a long module docstring that explains many things." for i in range(300)]
    prose[40] += " A tab\\t here."
    prose[41] += " A newline\\n there."
    source = '"""' + "\n".join(prose) + '\n"""  # noqa\n\nimport os\n'
    options = ChunkOptions(max_chunk_chars=600)
    chunks = chunk_text(source, "python", options)
    assert len(chunks) > 10
    assert all(_nonspace(c.content) <= options.code_budget.hard for c in chunks)


def test_deep_nesting_and_broken_code_still_give_exact_chunks() -> None:
    deep = "x = " + "(" * 300 + "1" + ")" * 300 + "\n" + "y = [\n" + "    1 +\n" * 2000 + "    1]\n"
    broken = "def f(:\n    return )\nclass {\n" * 50
    for source in (deep, broken):
        lines = split_lines(source)
        chunks = chunk_text(source, "python", ChunkOptions(max_chunk_chars=200))
        for chunk in chunks:
            assert "\n".join(lines[chunk.start_line - 1 : chunk.end_line]) == chunk.content
        assert {n for n, line in enumerate(lines, 1) if line.strip()} <= {
            n for c in chunks for n in range(c.start_line, c.end_line + 1)
        }


def _symbols(source: str, language: str) -> list[tuple[str, str, int, int]]:
    return [(s.qualified_name, s.kind, s.start_line, s.end_line) for s in analyze(source, language).symbols]


PYTHON = '''\
import os


@decorator
class Outer(Base):
    """Doc."""

    def method(self):
        def helper():
            return 1
        return helper()

    async def run(self):
        pass


def top(a,
        b):
    class Local:
        pass
    return Local
'''

JAVASCRIPT = """\
// A class.
class Widget extends Base {
  render() {
    return 1;
  }
  handle = () => {};
}
function build(a) { return a; }
const make = (x) => x;
const Anon = class Named {};
module.exports.load = function () {};
export default { get() {}, put: () => 1 };
"""

TYPESCRIPT = """\
export interface Shape { area(): number; }
export type Id = string;
enum Color { Red }
namespace Geo { export function dist(): number { return 0; } }
abstract class Base { abstract size(): number; }
export class Circle implements Shape {
  area(): number { return 1; }
}
declare function ext(x: number): void;
export const area = (s: Shape): number => s.area();
"""

TSX = """\
export function App(props: Props) {
  return <div>{props.name}</div>;
}
const Button = ({ label }: { label: string }) => <button>{label}</button>;
"""

GO = """\
package main

// Router routes.
type Router struct {
	routes map[string]int
}

type (
	Handler interface{ Serve() }
	ID      int
)

func (r *Router) Handle(path string) error {
	return nil
}

func New[T any]() *Router { return nil }
"""

RUST = """\
/// A point.
#[derive(Debug)]
pub struct Point { x: i32 }

enum Kind { A }

trait Shape {
    fn area(&self) -> f64;
}

impl<T> fmt::Display for Point<T> {
    fn fmt(&self) -> i32 { 1 }
}

mod tests {
    fn check() {}
}

macro_rules! square { ($x:expr) => { $x * $x }; }

type Alias = i32;
"""


@pytest.mark.parametrize(
    ("language", "source", "expected"),
    [
        (
            "python",
            PYTHON,
            [
                ("Outer", "class", 4, 14),
                ("Outer.method", "method", 8, 11),
                ("Outer.method.helper", "function", 9, 10),
                ("Outer.run", "method", 13, 14),
                ("top", "function", 17, 21),
                ("top.Local", "class", 19, 20),
            ],
        ),
        (
            "javascript",
            JAVASCRIPT,
            [
                ("Widget", "class", 2, 7),
                ("Widget.render", "method", 3, 5),
                ("Widget.handle", "method", 6, 6),
                ("build", "function", 8, 8),
                ("make", "function", 9, 9),
                ("Anon", "class", 10, 10),
                ("Anon.Named", "class", 10, 10),
                ("load", "function", 11, 11),
                ("get", "function", 12, 12),
                ("put", "function", 12, 12),
            ],
        ),
        (
            "typescript",
            TYPESCRIPT,
            [
                ("Shape", "interface", 1, 1),
                ("Shape.area", "method", 1, 1),
                ("Id", "type", 2, 2),
                ("Color", "enum", 3, 3),
                ("Geo", "module", 4, 4),
                ("Geo.dist", "function", 4, 4),
                ("Base", "class", 5, 5),
                ("Base.size", "method", 5, 5),
                ("Circle", "class", 6, 8),
                ("Circle.area", "method", 7, 7),
                ("ext", "function", 9, 9),
                ("area", "function", 10, 10),
            ],
        ),
        ("tsx", TSX, [("App", "function", 1, 3), ("Button", "function", 4, 4)]),
        (
            "go",
            GO,
            [
                ("Router", "struct", 4, 6),
                ("Handler", "interface", 9, 9),
                ("Handler.Serve", "method", 9, 9),
                ("ID", "type", 10, 10),
                ("Router.Handle", "method", 13, 15),
                ("New", "function", 17, 17),
            ],
        ),
        (
            "rust",
            RUST,
            [
                ("Point", "struct", 2, 3),
                ("Kind", "enum", 5, 5),
                ("Shape", "trait", 7, 9),
                ("Shape.area", "method", 8, 8),
                ("Point.fmt", "method", 12, 12),
                ("tests", "module", 15, 17),
                ("tests.check", "function", 16, 16),
                ("square", "macro", 19, 19),
                ("Alias", "type", 21, 21),
            ],
        ),
    ],
)
def test_definitions_in_every_grammar(language: str, source: str, expected: list) -> None:
    assert _symbols(source, language) == expected
    # The symbols come from the same parse as the chunks: a chunk inside a definition names it.
    chunks = chunk_text(source, language, ChunkOptions(max_chunk_chars=100, min_chunk_lines=1))
    names = {name for name, *_ in expected}
    assert all(c.symbol is None or c.symbol in names for c in chunks)


def test_symbols_of_files_that_are_not_code_or_do_not_parse() -> None:
    assert analyze("# Title\n\ndef f(): pass\n", "markdown").symbols == []
    assert analyze("", "python").symbols == []
    broken = analyze("def ok():\n    return 1\n\ndef (:\n", "python")
    assert Symbol("ok", "ok", "function", 1, 2) in broken.symbols
