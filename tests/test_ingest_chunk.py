"""Chunking: exact line ranges for every splitter (property-tested), language detection, fallbacks."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mahavishnu_assets.ingest.chunk import (
    ChunkOptions,
    chunk_hash,
    chunk_text,
    detect_language,
    split_lines,
)
from mahavishnu_assets.ingest.discover import normalize_newlines

SMALL = ChunkOptions(chunk_lines=6, chunk_lines_overlap=2, max_chunk_chars=200)
LANGUAGES = ["python", "javascript", "typescript", "tsx", "go", "rust", "markdown", "text", "yaml"]

CODE_LINES = [
    "def f(x):",
    "    return x + 1",
    "class A:",
    "    pass",
    "function g(a) { return a * 2; }",
    "const s = `multi",
    "line`;",
    'fn main() { println!("hi"); }',
    "func G() int { return 1 }",
    "# Heading",
    "## Sub heading",
    "Some prose. Another sentence! A question?",
    "",
    "   ",
    "\t\tindented",
    "}",
    "{",
    "/* comment */",
    "'''docstring",
    'x = "ünïcödé 漢字 🎉"',
    "a" * 150,
]


def check_exact(text: str, language: str, options: ChunkOptions) -> None:
    lines = split_lines(text)
    chunks = chunk_text(text, language, options)
    covered: set[int] = set()
    for i, chunk in enumerate(chunks):
        assert chunk.index == i
        assert 1 <= chunk.start_line <= chunk.end_line <= len(lines)
        assert "\n".join(lines[chunk.start_line - 1 : chunk.end_line]) == chunk.content
        assert chunk.content.strip(), "no blank chunks"
        assert lines[chunk.start_line - 1].strip() and lines[chunk.end_line - 1].strip(), "edges are trimmed"
        assert chunk.content_hash == chunk_hash(chunk.document)
        assert chunk.document.endswith("\n" + chunk.content)
        covered.update(range(chunk.start_line, chunk.end_line + 1))
    # Nothing is lost: every line with content is in some chunk.
    assert all(i in covered for i, line in enumerate(lines, 1) if line.strip())
    # Deterministic: the same text always gives the same chunks.
    assert chunk_text(text, language, options) == chunks


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lines=st.lists(
        st.one_of(st.sampled_from(CODE_LINES), st.text(max_size=60).map(lambda s: s.replace("\x00", ""))),
        max_size=60,
    ),
    language=st.sampled_from(LANGUAGES),
    trailing_newline=st.booleans(),
)
def test_chunk_lines_give_back_the_chunk_text(
    lines: list[str], language: str, trailing_newline: bool
) -> None:
    text = normalize_newlines("\n".join(lines) + ("\n" if trailing_newline else ""))
    check_exact(text, language, SMALL)


def test_real_code_is_split_on_syntax() -> None:
    source = "\n".join(
        f"def function_{i}(value):\n    '''Docstring {i}.'''\n    total = value * {i}\n    return total\n"
        for i in range(30)
    )
    chunks = chunk_text(source, "python", ChunkOptions(max_chunk_chars=400))
    check_exact(source, "python", ChunkOptions(max_chunk_chars=400))
    assert len(chunks) > 3
    # Chunks start at definitions, not in the middle of one.
    assert all(c.content.startswith("def ") for c in chunks)


def test_markdown_keeps_sections_together() -> None:
    text = "# One\n\nIntro text.\n\n## Two\n\n" + "Body line.\n" * 5 + "\n## Three\n\nEnd.\n"
    chunks = chunk_text(text, "markdown", ChunkOptions(max_chunk_chars=80))
    check_exact(text, "markdown", ChunkOptions(max_chunk_chars=80))
    assert any(c.content.startswith("## Two") for c in chunks)


def test_broken_code_falls_back_to_line_windows() -> None:
    text = "}}}} ((( def class fn {\n" * 40
    for language in ("python", "javascript", "go", "rust", "typescript"):
        check_exact(text, language, SMALL)


def test_crlf_and_blank_files() -> None:
    text = normalize_newlines("a = 1\r\nb = 2\r\n\r\nc = 3\r")
    assert split_lines(text) == ["a = 1", "b = 2", "", "c = 3"]
    check_exact(text, "python", SMALL)
    assert chunk_text("", "python") == []
    assert chunk_text("\n\n   \n", "text") == []


def test_language_detection() -> None:
    assert detect_language("src/app.py") == "python"
    assert detect_language("web/App.tsx") == "tsx"
    assert detect_language("lib.rs") == "rust"
    assert detect_language("README.md") == "markdown"
    assert detect_language("Dockerfile.dev") == "dockerfile"
    assert detect_language("bin/tool", "#!/usr/bin/env python3\nprint(1)\n") == "python"
    assert detect_language("bin/run", "#!/bin/bash\necho\n") == "shell"
    assert detect_language("LICENSE") == "text"
    assert detect_language("data.unknownext") == "text"


def test_long_prose_is_cut_between_sentences_without_losing_text() -> None:
    from mahavishnu_assets.ingest.chunk import ChunkOptions, _sentences

    text = " ".join(f"Sentence number {i} says something about item {i}." for i in range(80))
    assert "".join(_sentences(text)) == text
    assert _sentences("One. Two!  Three?\nFour") == ["One. ", "Two!  ", "Three?\n", "Four"]
    paragraphs = "\n".join(text[i : i + 300] for i in range(0, len(text), 300)) + "\n"
    chunks = chunk_text(paragraphs, "text", ChunkOptions(max_chunk_chars=600))
    assert len(chunks) > 3
    lines = paragraphs.split("\n")
    for chunk in chunks:
        assert "\n".join(lines[chunk.start_line - 1 : chunk.end_line]) == chunk.content
        assert len(chunk.content) <= 600 + 300  # whole lines: at most one line past the limit
