"""Line ranges of code chunks from its syntax tree, the cAST way: split only what is too big, merge the rest.

A node that fits the size budget is kept whole; adjacent siblings are merged greedily up to the budget; a node
too big is replaced by its children (nodes sharing a line stay together, since chunks are whole lines). Sizes
are non-whitespace characters, so indentation and blank lines cost nothing. Two kinds of glue keep pieces that
mean nothing alone out of chunks of their own:

* forward: a definition's header (decorators, `def f(...):`, `class A(B):`, `func (r *R) Handle() {`) and the
  comments and attributes right above something go with what follows. When what follows is split, the header
  is carried into its first piece, so a header never ends up alone or at the end of the previous chunk;
* backward: closing tokens (`}`, `);`) go with what precedes.

Then chunks under `min_lines` lines join a neighbour while the result stays within the hard limit (the budget
plus a quarter). A chunk goes past the hard limit only with a single line bigger than the budget, or by the one
line of its body that a header (with its decorators) nearly filling the hard limit must take along. The ranges
cover every non-blank line of the file exactly once.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from mahavishnu_assets.ingest.symbols import NOTE_TYPES, end_line

# Roles of a node in its parent, for glue.
BODY, HEAD, TAIL, NOTE = 0, 1, 2, 3
NONE, FORWARD, BACKWARD = 0, 1, -1
_HEAD_FIELDS = ("body", "consequence", "declaration", "definition")
# Beyond this depth the rest of a subtree is cut into line windows (very deep trees: long operator chains).
MAX_DEPTH = 200


@dataclass(frozen=True)
class Budget:
    chars: int  # non-whitespace characters a merge may reach
    hard: int  # what absorbing a small piece (a closer, a short chunk) or carrying a header may reach
    min_lines: int


@dataclass(slots=True)
class _Atom:
    start: int  # 1-based first line
    end: int  # last line
    items: list[tuple[Any, int]]  # (node, role)
    glue: int


def nonspace_prefix(lines: list[str]) -> list[int]:
    """prefix[i] = non-whitespace characters of lines 1..i (prefix[0] = 0)."""
    return [0, *itertools.accumulate(len(line) - line.count(" ") - line.count("\t") for line in lines)]


class _Packer:
    def __init__(self, lines: list[str], prefix: list[int], budget: Budget) -> None:
        self.lines = lines
        self.prefix = prefix
        self.budget = budget

    def size(self, start: int, end: int) -> int:
        return self.prefix[end] - self.prefix[start - 1]

    # -- atoms ------------------------------------------------------------------------------------------
    @staticmethod
    def _body(node: Any, children: list[Any]) -> Any | None:
        """The child a node's header leads into: a body field, else (a small node) its last named child when
        that spans lines and the named children before it do not (`except E:` + block, `f = ` + function)."""
        for name in _HEAD_FIELDS:
            body = node.child_by_field_name(name)
            if body is not None:
                return body
        named = [c for c in children if c.is_named and c.type not in NOTE_TYPES]
        if not named or len(named) > 3 or end_line(named[-1]) == named[-1].start_point[0] + 1:
            return None
        if all(end_line(c) == c.start_point[0] + 1 for c in named[:-1]):
            return named[-1]
        return None

    def children(self, node: Any, role: int) -> list[tuple[Any, int]]:
        """A node's children with their roles; the children of a header, closer or note keep its role."""
        children = [c for c in node.children if c.end_byte > c.start_byte]
        if role != BODY:
            return [(c, role) for c in children]
        body = self._body(node, children)
        lead = 0
        while lead < len(children) and not children[lead].is_named:
            lead += 1
        trail = len(children)
        while trail > lead and not children[trail - 1].is_named:
            trail -= 1
        out = []
        for i, child in enumerate(children):
            if child.type in NOTE_TYPES:
                out.append((child, NOTE))
            elif i < lead or (body is not None and child.end_byte <= body.start_byte):
                out.append((child, HEAD))
            elif i >= trail:
                out.append((child, TAIL))
            else:
                out.append((child, BODY))
        return out

    def _atoms(self, items: list[tuple[Any, int]], first: int, last: int) -> list[_Atom]:
        """Items grouped into runs that share lines, within lines first..last; a run's glue follows from its
        items' roles. Lines of text no item holds (a long string's content between two escape sequences)
        become atoms of their own, which only line windows can cut."""
        atoms: list[_Atom] = []
        for node, role in items:
            start, end = node.start_point[0] + 1, end_line(node)
            if atoms and start <= atoms[-1].end:
                atom = atoms[-1]
                atom.end = max(atom.end, end)
                atom.items.append((node, role))
            else:
                atoms.append(_Atom(start, end, [(node, role)], NONE))
        for atom in atoms:
            roles = {role for _, role in atom.items}
            if roles <= {HEAD, NOTE}:
                atom.glue = FORWARD
            elif roles == {TAIL}:
                atom.glue = BACKWARD
        out: list[_Atom] = []
        after = first  # the first line no atom has claimed yet
        for atom in [*atoms, _Atom(last + 1, last, [], NONE)]:
            text = [n for n in range(after, atom.start) if self.lines[n - 1].strip()]
            if text:
                out.append(_Atom(text[0], text[-1], [], NONE))
            if atom.items:
                out.append(atom)
                after = atom.end + 1
        return out

    def _expand(self, atom: _Atom) -> list[tuple[Any, int]] | None:
        """The atom's items with every multi-line node replaced by its children; None if nothing can open."""
        out: list[tuple[Any, int]] = []
        opened = False
        for node, role in atom.items:  # a text atom has none: nothing opens
            if node.child_count and end_line(node) > node.start_point[0] + 1:
                out.extend(self.children(node, role))
                opened = True
            else:
                out.append((node, role))
        return out if opened else None

    # -- packing ------------------------------------------------------------------------------------------
    def pack(
        self, items: list[tuple[Any, int]], span: tuple[int, int], carry: tuple[int, int] | None, depth: int
    ) -> list[tuple[int, int]]:
        """Ranges for sibling items covering lines `span`, merged greedily; `carry` (a glued header) opens the
        first range."""
        budget, hard = self.budget.chars, self.budget.hard
        out: list[tuple[int, int]] = []
        start = end = glue = 0  # the open range (start 0: none) and where its forward-glued tail starts
        if carry is not None:
            start, end = carry
            glue = carry[0]
        for atom in self._atoms(items, *span):
            if start:
                merged = self.size(start, atom.end)
                if merged <= budget or (merged <= hard and (atom.glue == BACKWARD or glue == start)):
                    end = atom.end
                    glue = (glue or atom.start) if atom.glue == FORWARD else 0
                    continue
            fits = self.size(atom.start, atom.end) <= budget
            if fits and (not glue or self.size(glue, atom.end) <= hard):
                # Close the open range; its glued tail moves on with this atom.
                if start and glue:
                    if glue > start:
                        out.append((start, glue - 1))
                    start = glue
                else:
                    if start:
                        out.append((start, end))
                    start = atom.start
                    glue = 0
                end = atom.end
                glue = (glue or atom.start) if atom.glue == FORWARD else 0
                continue
            # Too big (or too big with the header it must take): split it, the glued tail opening its first piece.
            lead = None
            if start:
                if glue:
                    if glue > start:
                        out.append((start, glue - 1))
                    lead = (glue, end)
                else:
                    out.append((start, end))
            out.extend(self.split(atom, lead, depth + 1))
            start = end = glue = 0
        if start:
            out.append((start, end))
        return out

    def split(self, atom: _Atom, carry: tuple[int, int] | None, depth: int) -> list[tuple[int, int]]:
        expanded = self._expand(atom) if depth < MAX_DEPTH else None
        if expanded is None:
            return self.windows(atom.start, atom.end, carry)
        return self.pack(expanded, (atom.start, atom.end), carry, depth)

    def windows(self, first: int, last: int, carry: tuple[int, int] | None) -> list[tuple[int, int]]:
        """Greedy runs of whole lines within the budget (each at least one line), the carry opening the first."""
        out: list[tuple[int, int]] = []
        start = carry[0] if carry is not None else first
        line = first
        while line <= last:
            end = line
            while end < last and self.size(start, end + 1) <= self.budget.chars:
                end += 1
            out.append((start, end))
            line = start = end + 1
        return out


def _small_merged(packer: _Packer, ranges: list[tuple[int, int]], budget: Budget) -> list[tuple[int, int]]:
    """Ranges under min_lines lines joined with the neighbour that gives the smaller union within the hard
    limit (the previous one on a tie)."""
    out = list(ranges)
    i = 0
    while i < len(out):
        start, end = out[i]
        if end - start + 1 >= budget.min_lines or len(out) == 1:
            i += 1
            continue
        best: tuple[int, int] | None = None  # (size, neighbour index)
        if i > 0:
            size = packer.size(out[i - 1][0], end)
            if size <= budget.hard:
                best = (size, i - 1)
        if i + 1 < len(out):
            size = packer.size(start, out[i + 1][1])
            if size <= budget.hard and (best is None or size < best[0]):
                best = (size, i + 1)
        if best is None:
            i += 1
            continue
        low = min(i, best[1])
        out[low : low + 2] = [(out[low][0], out[low + 1][1])]
        i = low
    return out


def code_ranges(tree: Any, lines: list[str], budget: Budget) -> list[tuple[int, int]]:
    """Line ranges (1-based, inclusive) covering every non-blank line of the parsed file exactly once."""
    prefix = nonspace_prefix(lines)
    packer = _Packer(lines, prefix, budget)
    root = tree.root_node
    if packer.size(1, len(lines)) <= budget.chars:
        raw = [(1, len(lines))]
    else:
        raw = packer.pack(packer.children(root, BODY), (1, len(lines)), None, 0)
    # Trim blank edges; give any non-blank line no node claimed (a grammar's quirk) to the range before it.
    covered: list[tuple[int, int]] = []
    for start, end in sorted(raw):
        start = max(start, covered[-1][1] + 1) if covered else start
        end = min(end, len(lines))
        while start <= end and not lines[start - 1].strip():
            start += 1
        while end >= start and not lines[end - 1].strip():
            end -= 1
        if start > end:
            continue
        if covered and any(lines[n - 1].strip() for n in range(covered[-1][1] + 1, start)):
            covered[-1] = (covered[-1][0], start - 1)
        covered.append((start, end))
    if not covered:
        return []
    first = next(n for n in range(1, len(lines) + 1) if lines[n - 1].strip())
    last = len(lines)
    while not lines[last - 1].strip():
        last -= 1
    if first < covered[0][0]:
        covered[0] = (first, covered[0][1])
    if last > covered[-1][1]:
        covered[-1] = (covered[-1][0], last)
    # A range widened over blank lines may end on one: trim again.
    trimmed = []
    for start, end in covered:
        while end > start and not lines[end - 1].strip():
            end -= 1
        trimmed.append((start, end))
    return _small_merged(packer, trimmed, budget)
