"""The context header embedded with each chunk: where it is (path, language), in which definition, and the
signature of the definition it starts inside of, so a piece of a long method still says whose body it is.

The chunk's `content` stays the file's exact lines; only what is embedded (and hashed as the embedding cache's
key) gets the header.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence

from mahavishnu_assets.ingest.symbols import Definition

# A signature longer than this (a parameter list over many lines) is cut: the header stays short.
MAX_SIGNATURE_CHARS = 200


class Enclosing:
    """Finds, for a line range of one file, its innermost enclosing definition and the one it starts inside."""

    def __init__(self, definitions: Sequence[Definition], lines: Sequence[str]) -> None:
        self.definitions = definitions
        self.lines = lines
        # Definitions come in source order, an enclosing one before what it holds: note starts never decrease.
        self.starts = [d.note_start for d in definitions]
        # By first line, then source order (the order their rows get ids in, see migration 0045).
        self.by_line = sorted(definitions, key=lambda d: d.symbol.start_line)
        self.lines_of = [d.symbol.start_line for d in self.by_line]

    def _climb(self, index: int, accept: Callable[[Definition], bool]) -> Definition | None:
        while index >= 0:
            definition = self.definitions[index]
            if accept(definition):
                return definition
            index = definition.parent
        return None

    def symbol(self, start: int, end: int) -> str | None:
        """Qualified name of the innermost definition holding lines start..end (with its notes), else None."""
        last = bisect.bisect_right(self.starts, start) - 1
        found = self._climb(last, lambda d: d.note_start <= start and end <= d.symbol.end_line)
        return found.symbol.qualified_name if found else None

    def names(self, start: int, end: int) -> str | None:
        """The names of the definitions whose first line is in start..end, in that order, or None: what a
        chunk defines, for lexical search (a chunk of small methods is the place each of them is defined)."""
        first = bisect.bisect_left(self.lines_of, start)
        last = bisect.bisect_right(self.lines_of, end)
        return " ".join(d.symbol.name for d in self.by_line[first:last]) or None

    def signature(self, start: int) -> str | None:
        """The header of the innermost definition that line `start` is inside of, past that header."""
        last = bisect.bisect_right(self.starts, start - 1) - 1
        found = self._climb(last, lambda d: d.signature_end < start <= d.symbol.end_line)
        if found is None:
            return None
        text = " ".join(
            line.strip()
            for line in self.lines[found.signature_start - 1 : found.signature_end]
            if line.strip()
        )
        return text if len(text) <= MAX_SIGNATURE_CHARS else text[: MAX_SIGNATURE_CHARS - 1] + "…"


def header(path: str, language: str, symbol: str | None, signature: str | None) -> str:
    """The lines put before a chunk's content for embedding and lexical matching."""
    parts = [f"File: {path} ({language})" if path else f"Language: {language}"]
    if symbol:
        parts.append(f"Symbol: {symbol}")
    if signature:
        parts.append(f"Inside: {signature}")
    return "\n".join(parts)
