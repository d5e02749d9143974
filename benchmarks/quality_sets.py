"""Known-item query sets from Python sources, relevance by line overlap and rank metrics (search quality).

The plain parts of benchmarks/search_quality.py, importable without a database:

- `blank_docstrings`: a module's source with every docstring (module, class, function) removed and the line
  count unchanged, so the line numbers of everything else stay true;
- `build_query_sets`: from the ORIGINAL sources, three sets of (query text, target definition):
  `nl` (the first sentence of a function's or method's docstring), `identifier` (a function, method or class
  name defined exactly once in the corpus) and `qualified` (`Class.method`, unique in the corpus);
- `split_of` / `select`: a deterministic `tune` / `report` split by a hash of the target, then a deterministic
  sample of at most N queries;
- `relevant`, `first_relevant_rank`, `score`: the relevance rule and MRR@k, hit@1, hit@k.

A definition's lines run from its first decorator (or its `def`/`class` line) to its last line, as Python's
`ast` gives them.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

KINDS = ("nl", "identifier", "qualified")
SPLITS = ("tune", "report")
MIN_WORDS = 4  # shorter first sentences ("Return the value.") name nothing in particular
TEST_DIRS = frozenset({"test", "tests", "testing"})


@dataclass(frozen=True)
class Target:
    path: str
    start_line: int
    end_line: int

    def key(self) -> str:
        return f"{self.path}:{self.start_line}-{self.end_line}"


@dataclass(frozen=True)
class Query:
    kind: str
    text: str
    target: Target


@dataclass(frozen=True)
class Definition:
    path: str
    name: str
    kind: str  # function, method or class
    owner: str | None  # the class a method is defined in directly
    start_line: int
    end_line: int
    docstring: str | None

    @property
    def target(self) -> Target:
        return Target(self.path, self.start_line, self.end_line)


# -- reading sources ------------------------------------------------------------------------------------------
def definitions(path: str, source: str) -> list[Definition]:
    """Every function, method and class of a module; SyntaxError (and ValueError for NUL) propagate."""
    tree = ast.parse(source)
    out: list[Definition] = []

    def visit(node: ast.AST, owner: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                start = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                is_class = isinstance(child, ast.ClassDef)
                kind = "class" if is_class else ("method" if owner is not None else "function")
                out.append(
                    Definition(
                        path,
                        child.name,
                        kind,
                        owner,
                        start,
                        child.end_lineno or child.lineno,
                        ast.get_docstring(child),
                    )
                )
                # A method's owner is the class it is written in; a function nested in a method has none.
                visit(child, child.name if is_class else None)
            else:
                visit(child, owner)

    visit(tree, None)
    return out


def is_test_path(path: str) -> bool:
    """Test code: its docstrings describe tests, not the library, so no query targets it."""
    parts = path.split("/")
    name = parts[-1]
    return (
        any(p in TEST_DIRS for p in parts[:-1])
        or name.startswith("test_")
        or name.endswith("_test.py")
        or name == "conftest.py"
    )


def first_sentence(docstring: str) -> str:
    """The docstring's first sentence on one line: its first paragraph up to the first `.`, `!` or `?` that
    ends a sentence (followed by a space or the end)."""
    paragraph = inspect.cleandoc(docstring).strip().split("\n\n", 1)[0]
    text = " ".join(paragraph.split())
    match = re.search(r"[.!?](?=\s|$)", text)
    return text[: match.end()] if match else text


# -- blanking -------------------------------------------------------------------------------------------------
def _docstring_nodes(tree: ast.Module) -> list[tuple[ast.Expr, bool]]:
    """(docstring statement, whether it is its body's only statement) of the module and every definition."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                out.append((first, len(node.body) == 1))
    return out


def _split_lines(source: str) -> list[str]:
    # Only "\n" ends a line here, as for the tokenizer ("\r\n" keeps its "\r"); str.splitlines would also split
    # at form feeds and other separators Python does not count.
    return re.split(r"(?<=\n)", source)


def _ending(line: bytes) -> bytes:
    return line[len(line.rstrip(b"\r\n")) :]


def blank_docstrings(source: str) -> str:
    """The source with every docstring removed and the same number of lines; the result still parses.

    A docstring on lines of its own becomes empty lines (`...` on its first line when it was the whole body);
    one sharing a line with other code becomes `...` (or `(`, empty lines, `...)` when it spans lines).
    ValueError when the source does not parse or the result would not.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise ValueError(f"not Python 3: {exc.msg} (line {exc.lineno})") from exc
    # ast's columns are UTF-8 byte offsets.
    lines = [line.encode("utf-8", "surrogatepass") for line in _split_lines(source)]
    nodes = sorted(_docstring_nodes(tree), key=lambda n: (n[0].lineno, n[0].col_offset), reverse=True)
    for node, alone in nodes:
        first, last = node.lineno - 1, (node.end_lineno or node.lineno) - 1
        end_col = node.end_col_offset if node.end_col_offset is not None else len(lines[last])
        prefix = lines[first][: node.col_offset]
        suffix = lines[last][end_col:]
        rest = suffix.strip()
        if not prefix.strip() and (not rest or rest.startswith(b"#")):
            new = [_ending(lines[i]) for i in range(first, last + 1)]
            if alone:
                new[0] = prefix + b"..." + new[0]
        elif first == last:
            new = [prefix + b"..." + suffix]
        else:
            # Parentheses let an expression span the docstring's lines.
            middle = [_ending(lines[i]) for i in range(first, last)]
            new = [prefix + b"(" + middle[0], *middle[1:], b"...)" + suffix]
        lines[first : last + 1] = new
    out = b"".join(lines).decode("utf-8", "surrogatepass")
    if out.count("\n") != source.count("\n"):
        raise ValueError("blanking changed the number of lines")
    try:
        ast.parse(out)
    except SyntaxError as exc:
        raise ValueError(f"blanked source does not parse: {exc.msg} (line {exc.lineno})") from exc
    return out


# -- query sets -----------------------------------------------------------------------------------------------
def build_query_sets(defs: Iterable[Definition]) -> dict[str, list[Query]]:
    """The three query sets of a corpus, from the definitions of all its parsed files.

    Uniqueness counts every file (tests included); targets are only outside test code. An `nl` sentence
    shared by several definitions is dropped (it does not say which one is meant), so are dunder names as
    identifiers (`__init__` is never unique anyway).
    """
    defs = list(defs)
    names = Counter(d.name for d in defs)
    qualified = Counter(f"{d.owner}.{d.name}" for d in defs if d.kind == "method")
    sentences: dict[str, list[Definition]] = {}
    for d in defs:
        if d.kind != "class" and d.docstring and not is_test_path(d.path):
            sentence = first_sentence(d.docstring)
            if len(sentence.split()) >= MIN_WORDS:
                sentences.setdefault(sentence, []).append(d)
    sets: dict[str, list[Query]] = {kind: [] for kind in KINDS}
    for sentence, found in sentences.items():
        if len(found) == 1:
            sets["nl"].append(Query("nl", sentence, found[0].target))
    for d in defs:
        if is_test_path(d.path):
            continue
        if names[d.name] == 1 and not (d.name.startswith("__") and d.name.endswith("__")):
            sets["identifier"].append(Query("identifier", d.name, d.target))
        if d.kind == "method" and qualified[f"{d.owner}.{d.name}"] == 1:
            sets["qualified"].append(Query("qualified", f"{d.owner}.{d.name}", d.target))
    return sets


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def split_of(target: Target) -> str:
    """`tune` or `report`, by a hash of the target alone: every query about one definition falls in the same
    half, whatever the query set, the cap or the other definitions."""
    return SPLITS[_digest(target.key())[0] & 1]


def select(queries: Sequence[Query], split: str, max_queries: int | None) -> list[Query]:
    """The split's queries, at most `max_queries` of them: those first in the order of a hash of the query, so
    a larger cap only adds queries."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    chosen = [q for q in queries if split_of(q.target) == split]
    chosen.sort(key=lambda q: _digest(f"{q.kind}\0{q.text}\0{q.target.key()}"))
    return chosen if max_queries is None else chosen[:max_queries]


# -- relevance and metrics ------------------------------------------------------------------------------------
def relevant(target: Target, path: str, start_line: int, end_line: int) -> bool:
    """A hit is relevant when it is in the target's file and overlaps the target's lines by at least half of
    the shorter of the two ranges (inclusive line ranges)."""
    if path != target.path:
        return False
    overlap = min(end_line, target.end_line) - max(start_line, target.start_line) + 1
    shorter = min(end_line - start_line + 1, target.end_line - target.start_line + 1)
    return overlap > 0 and 2 * overlap >= shorter


def first_relevant_rank(target: Target, hits: Sequence[tuple[str, int, int]], k: int = 10) -> int | None:
    """The 1-based rank of the first relevant hit among the first k (path, start_line, end_line), or None."""
    for rank, (path, start, end) in enumerate(hits[:k], start=1):
        if relevant(target, path, start, end):
            return rank
    return None


@dataclass(frozen=True)
class Scores:
    queries: int
    mrr: float  # mean of 1/rank of the first relevant hit, 0 when none is within k
    hit1: float
    hitk: float
    k: int = 10

    def to_dict(self) -> dict[str, float | int]:
        return {
            "queries": self.queries,
            f"mrr@{self.k}": round(self.mrr, 4),
            "hit@1": round(self.hit1, 4),
            f"hit@{self.k}": round(self.hitk, 4),
        }


def score(ranks: Sequence[int | None], k: int = 10) -> Scores:
    """MRR@k, hit@1 and hit@k over the queries' first relevant ranks (None: nothing relevant found)."""
    if not ranks:
        return Scores(0, 0.0, 0.0, 0.0, k)
    inside = [r for r in ranks if r is not None and r <= k]
    n = len(ranks)
    return Scores(n, sum(1 / r for r in inside) / n, sum(r == 1 for r in inside) / n, len(inside) / n, k)


# -- line ranges of text found in a file ----------------------------------------------------------------------
def locate_lines(text: str, chunk: str, start_at: int = 0) -> tuple[int, int, int] | None:
    """(start_line, end_line, offset) of a chunk's text in a file's text, searched from `start_at` first and then
    from the beginning; None when it is not there verbatim. A splitter's nodes come in file order, so
    passing the previous node's offset finds repeated text at the right place."""
    body = chunk.strip("\n")
    if not body:
        return None
    offset = text.find(body, start_at)
    if offset < 0:
        offset = text.find(body)
    if offset < 0:
        return None
    start_line = text.count("\n", 0, offset) + 1
    return start_line, start_line + body.count("\n"), offset
