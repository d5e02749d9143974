"""Split a text file into chunks of whole lines, by language, with exact line numbers and context headers.

Code in Python, JavaScript, TypeScript/TSX, Go and Rust is parsed once with tree-sitter (the grammar wheels):
the tree gives both the chunks (`structure`: split what is too big, merge small siblings, headers stay with
their bodies) and the file's definitions (`symbols`). Markdown goes through llama-index's `MarkdownNodeParser`,
prose through its `SentenceSplitter`, everything else through line windows. For every chunk
`"\\n".join(lines[start_line - 1 : end_line]) == content`, with `lines = text.split("\\n")` of the
newline-normalized text; code chunks cover every non-blank line exactly once. When a parser fails, line windows
take over. Each chunk carries a context header (path, language, enclosing symbol, the signature it starts
inside of): its `document`, header then content, is what gets embedded and what its hash keys.
llama-index and tree-sitter are imported on first use only: an unchanged re-ingest never pays for them.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import logging
import re
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import PurePosixPath
from typing import Any

from mahavishnu_assets.ingest import symbols as symbols_module
from mahavishnu_assets.ingest.context import Enclosing, header
from mahavishnu_assets.ingest.structure import Budget, code_ranges
from mahavishnu_assets.ingest.symbols import Definition, Symbol

logger = logging.getLogger(__name__)

# Bumped whenever chunk boundaries change for the same input: stored files are then re-chunked.
CHUNKER_VERSION = "4"

TREE_SITTER_LANGUAGES = ("python", "javascript", "typescript", "tsx", "go", "rust")
MARKDOWN = "markdown"
PROSE_LANGUAGES = frozenset({"text", "restructuredtext", "asciidoc"})

_EXTENSIONS: dict[str, str] = {
    ".py": "python",
    ".pyi": "python",
    ".pyw": "python",
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".jsx": "javascript",
    ".ts": "typescript",
    ".mts": "typescript",
    ".cts": "typescript",
    ".tsx": "tsx",
    ".go": "go",
    ".rs": "rust",
    ".md": MARKDOWN,
    ".markdown": MARKDOWN,
    ".mdx": MARKDOWN,
    ".txt": "text",
    ".text": "text",
    ".rst": "restructuredtext",
    ".adoc": "asciidoc",
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".cxx": "cpp",
    ".hpp": "cpp",
    ".hh": "cpp",
    ".java": "java",
    ".kt": "kotlin",
    ".kts": "kotlin",
    ".scala": "scala",
    ".cs": "csharp",
    ".rb": "ruby",
    ".php": "php",
    ".swift": "swift",
    ".m": "objective-c",
    ".lua": "lua",
    ".pl": "perl",
    ".r": "r",
    ".jl": "julia",
    ".ex": "elixir",
    ".exs": "elixir",
    ".erl": "erlang",
    ".hs": "haskell",
    ".ml": "ocaml",
    ".clj": "clojure",
    ".dart": "dart",
    ".zig": "zig",
    ".sh": "shell",
    ".bash": "shell",
    ".zsh": "shell",
    ".fish": "shell",
    ".ps1": "powershell",
    ".sql": "sql",
    ".html": "html",
    ".htm": "html",
    ".xml": "xml",
    ".svg": "xml",
    ".css": "css",
    ".scss": "scss",
    ".less": "less",
    ".vue": "vue",
    ".svelte": "svelte",
    ".json": "json",
    ".jsonc": "json",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".toml": "toml",
    ".ini": "ini",
    ".cfg": "ini",
    ".conf": "ini",
    ".proto": "protobuf",
    ".graphql": "graphql",
    ".tf": "terraform",
    ".cmake": "cmake",
    ".mk": "make",
    ".po": "gettext",
    ".tex": "latex",
    ".csv": "csv",
}
_FILENAMES: dict[str, str] = {
    "Makefile": "make",
    "GNUmakefile": "make",
    "Dockerfile": "dockerfile",
    "CMakeLists.txt": "cmake",
    "Gemfile": "ruby",
    "Rakefile": "ruby",
    "Jenkinsfile": "groovy",
    "README": "text",
    "LICENSE": "text",
    "COPYING": "text",
    "AUTHORS": "text",
    "CHANGES": "text",
    "NOTICE": "text",
}
_SHEBANGS = {"python": "python", "node": "javascript", "bash": "shell", "sh": "shell", "zsh": "shell"}


def detect_language(path: str, text: str = "") -> str:
    """A language name from the file name, else from a shebang line; `text` when nothing says otherwise."""
    p = PurePosixPath(path)
    language = _EXTENSIONS.get(p.suffix.lower()) or _FILENAMES.get(p.name)
    if language:
        return language
    if p.name.startswith("Dockerfile"):
        return "dockerfile"
    if text.startswith("#!"):
        first = text.split("\n", 1)[0]
        words = first[2:].replace("/", " ").split()
        for word in reversed(words):
            for interpreter, lang in _SHEBANGS.items():
                if (
                    word == interpreter
                    or word.startswith(interpreter)
                    and word[len(interpreter) :].replace(".", "").isdigit()
                ):
                    return lang
    return "text"


@dataclass(frozen=True)
class ChunkOptions:
    """Sizes. For code `max_chunk_chars` counts non-whitespace characters (indentation is free), and chunks
    shorter than `min_chunk_lines` lines join a neighbour; line windows and prose count every character."""

    chunk_lines: int = 40
    chunk_lines_overlap: int = 5
    max_chunk_chars: int = 1500
    min_chunk_lines: int = 4

    @property
    def code_budget(self) -> Budget:
        return Budget(
            self.max_chunk_chars, self.max_chunk_chars + self.max_chunk_chars // 4, self.min_chunk_lines
        )


@dataclass(frozen=True)
class Chunk:
    index: int
    start_line: int  # 1-based, inclusive
    end_line: int  # inclusive
    content: str  # the file's exact lines start_line..end_line
    content_hash: bytes  # of `document`: the embedding cache's key
    symbol: str | None = None  # qualified name of the innermost definition holding the chunk
    context: str = ""  # the header embedded before the content
    names: str | None = None  # names of the definitions starting in the chunk (lexical search weighs them)

    @property
    def document(self) -> str:
        """What is embedded: the context header, then the content."""
        return f"{self.context}\n{self.content}" if self.context else self.content


@dataclass(frozen=True)
class Analysis:
    """A file's chunks and, for parsed code, its definitions (one parse gives both)."""

    chunks: list[Chunk]
    symbols: list[Symbol] = field(default_factory=list)


def chunk_hash(document: str) -> bytes:
    return hashlib.sha256(document.encode("utf-8", "surrogatepass")).digest()


def split_lines(text: str) -> list[str]:
    """The file's lines: split on '\\n', without the empty piece after a final newline."""
    if not text:
        return []
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    return lines


# -- parsers and splitters, built once per thread ----------------------------------------------------------
_local = threading.local()


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _sentences(text: str) -> list[str]:
    """Sentences for `SentenceSplitter`, each keeping the whitespace after it (so no character is lost).

    A regex in place of the default NLTK punkt tokenizer, which cost several times all the rest of chunking
    prose (django's docs: 4 of 5 seconds); punkt's finer abbreviation handling only moves where a long
    paragraph is cut.
    """
    pieces: list[str] = []
    start = 0
    for end in _SENTENCE_END.finditer(text):
        pieces.append(text[start : end.end()])
        start = end.end()
    if start < len(text):
        pieces.append(text[start:])
    return pieces


def _char_tokenizer(text: str) -> range:
    # Sizes are counted in characters: no tokenizer download, and the limit matches max_chunk_chars. The
    # splitters only take len() of the result, so a range (built in constant time) stands in for the list.
    return range(len(text))


@lru_cache(maxsize=1)
def _quiet_llama_index() -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import llama_index.core.node_parser  # noqa: F401


def _splitter(kind: str, options: ChunkOptions) -> Any:
    cache: dict[tuple[str, ChunkOptions], Any] = getattr(_local, "splitters", None) or {}
    _local.splitters = cache
    splitter = cache.get((kind, options))
    if splitter is not None:
        return splitter
    _quiet_llama_index()
    from llama_index.core.node_parser import MarkdownNodeParser, SentenceSplitter

    if kind == MARKDOWN:
        splitter = MarkdownNodeParser(include_metadata=False, include_prev_next_rel=False)
    elif kind == "prose":
        splitter = SentenceSplitter(
            chunk_size=options.max_chunk_chars,
            chunk_overlap=min(options.max_chunk_chars // 10, 200),
            tokenizer=_char_tokenizer,
            chunking_tokenizer_fn=_sentences,
            include_metadata=False,
            include_prev_next_rel=False,
        )
    else:
        raise ValueError(kind)
    cache[(kind, options)] = splitter
    return splitter


# -- locating pieces -----------------------------------------------------------------------------------------
class _Lines:
    """Offsets of line starts, to turn a character offset into a 1-based line number."""

    def __init__(self, text: str, lines: list[str]) -> None:
        self.starts = [0, *itertools.accumulate(len(line) + 1 for line in lines[:-1])]

    def line_of(self, offset: int) -> int:
        return bisect.bisect_right(self.starts, offset)


def _locate(text: str, lines: list[str], pieces: list[str]) -> list[tuple[int, int]] | None:
    """Line ranges of pieces found in order in `text`; None when one cannot be found."""
    index = _Lines(text, lines)
    ranges: list[tuple[int, int]] = []
    cursor = 0
    for piece in pieces:
        piece = piece.strip()
        if not piece:
            continue
        position = text.find(piece, cursor)
        if position < 0:
            # Some splitters let pieces overlap; look again from the previous piece's start.
            position = text.find(piece, ranges and index.starts[ranges[-1][0] - 1] or 0)
            if position < 0:
                return None
        start = index.line_of(position)
        end = index.line_of(position + len(piece) - 1)
        ranges.append((start, end))
        cursor = max(cursor, position + len(piece))
    return ranges


def _disjoint(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Pieces split inside a line share it: give the line to the first and drop what is left empty."""
    out: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if out and start <= out[-1][1]:
            start = out[-1][1] + 1
        if start <= end:
            out.append((start, end))
    return out


def _windows(
    lines: list[str], first: int, last: int, options: ChunkOptions, overlap: bool
) -> list[tuple[int, int]]:
    """Greedy windows of whole lines within first..last: at most chunk_lines lines and max_chunk_chars chars."""
    out: list[tuple[int, int]] = []
    start = first
    step_back = options.chunk_lines_overlap if overlap else 0
    while start <= last:
        end = start
        size = len(lines[start - 1])
        while end < last and end - start + 1 < options.chunk_lines:
            grown = size + 1 + len(lines[end])
            if grown > options.max_chunk_chars:
                break
            size = grown
            end += 1
        out.append((start, end))
        if end >= last:
            break
        # Overlap at most a quarter of the window: long lines make short windows, which a fixed overlap
        # would mostly duplicate.
        start = max(start + 1, end + 1 - min(step_back, (end - start + 1) // 4))
    return out


def _span_chars(lines: list[str], start: int, end: int) -> int:
    """Characters of lines start..end (1-based, inclusive) with their newlines."""
    return sum(map(len, lines[start - 1 : end])) + end - start + 1


def _limit(lines: list[str], ranges: list[tuple[int, int]], options: ChunkOptions) -> list[tuple[int, int]]:
    """Ranges widened to whole lines may outgrow the limit; cut such ones into line windows."""
    hard = 2 * options.max_chunk_chars
    out: list[tuple[int, int]] = []
    for start, end in ranges:
        size = _span_chars(lines, start, end)
        if size > hard and end > start:
            out.extend(_windows(lines, start, end, options, overlap=False))
        else:
            out.append((start, end))
    return out


def _merge_small(
    lines: list[str], ranges: list[tuple[int, int]], options: ChunkOptions
) -> list[tuple[int, int]]:
    """Join neighbouring small sections (a heading and one line) up to the size limit."""
    out: list[tuple[int, int]] = []
    sizes: list[int] = []
    for start, end in ranges:
        size = _span_chars(lines, start, end)
        if out and out[-1][1] + 1 >= start and sizes[-1] + size <= options.max_chunk_chars:
            out[-1] = (out[-1][0], end)
            sizes[-1] += size
        else:
            out.append((start, end))
            sizes.append(size)
    return out


def _ranges(kind: str, text: str, lines: list[str], options: ChunkOptions) -> list[tuple[int, int]]:
    whole = [(1, len(lines))]
    if kind == MARKDOWN:
        from llama_index.core.schema import Document

        nodes = _splitter(kind, options).get_nodes_from_documents([Document(text=text)])
        located = _locate(text, lines, [n.get_content() for n in nodes])
        if located is None:
            raise ValueError("markdown sections not found in the text")
        return _limit(lines, _merge_small(lines, _disjoint(located), options), options)
    if kind == "prose":
        located = _locate(text, lines, _splitter(kind, options).split_text(text))
        if located is None:
            raise ValueError("sentences not found in the text")
        return _limit(lines, _disjoint(located), options)
    return _windows(lines, *whole[0], options, overlap=True)


def _kind(language: str) -> str:
    if language in TREE_SITTER_LANGUAGES or language == MARKDOWN:
        return language
    if language in PROSE_LANGUAGES:
        return "prose"
    return "lines"


def _code(
    text: str, language: str, lines: list[str], options: ChunkOptions
) -> tuple[list[tuple[int, int]], list[Definition]]:
    """Chunk ranges and definitions of a source file, from one parse."""
    tree = symbols_module.parse(text.encode("utf-8", "surrogatepass"), language)
    return code_ranges(tree, lines, options.code_budget), symbols_module.definitions(tree, language)


def analyze(text: str, language: str, options: ChunkOptions | None = None, *, path: str = "") -> Analysis:
    """Chunks of whole lines covering every non-blank line of `text` (newlines already normalized), each with
    its context header; for code also the file's definitions. `path` (repository-relative) goes in headers."""
    options = options or ChunkOptions()
    lines = split_lines(text)
    if not lines or not text.strip():
        return Analysis([])
    kind = _kind(language)
    definitions: list[Definition] = []
    try:
        if kind in TREE_SITTER_LANGUAGES:
            ranges, definitions = _code(text, language, lines, options)
        else:
            ranges = _ranges(kind, text, lines, options)
    except Exception as exc:  # a parser failing on odd input must not stop the file: line windows instead
        logger.debug("%s chunking failed (%s); using line windows", kind, exc)
        ranges, definitions = _windows(lines, 1, len(lines), options, overlap=True), []
    enclosing = Enclosing(definitions, lines)
    chunks: list[Chunk] = []
    seen: set[tuple[int, int]] = set()
    for start, end in ranges:
        # Blank lines at either edge carry nothing: trim them so ranges start and end on content.
        while start <= end and not lines[start - 1].strip():
            start += 1
        while end >= start and not lines[end - 1].strip():
            end -= 1
        if start > end or (start, end) in seen:
            continue
        seen.add((start, end))
        content = "\n".join(lines[start - 1 : end])
        symbol = enclosing.symbol(start, end) if definitions else None
        signature = enclosing.signature(start) if definitions else None
        context = header(path, language, symbol, signature)
        names = enclosing.names(start, end) if definitions else None
        chunks.append(
            Chunk(
                len(chunks), start, end, content, chunk_hash(f"{context}\n{content}"), symbol, context, names
            )
        )
    return Analysis(chunks, [d.symbol for d in definitions])


def chunk_text(
    text: str, language: str, options: ChunkOptions | None = None, *, path: str = ""
) -> list[Chunk]:
    """The chunks of `analyze`."""
    return analyze(text, language, options, path=path).chunks
