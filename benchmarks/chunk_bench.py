"""Chunking benchmark: the chunker's CPU time, chunk count and size distribution on a real source tree.

    python benchmarks/chunk_bench.py PATH [PATH ...] [--repeats 3]

Each file the ingest would read (discover with the default settings, then the reader's own checks) is chunked in
this one process, the way a reader worker chunks it; the CPU seconds (`time.process_time`) spent in the chunker
(parse, chunk ranges, symbols, context headers) are summed, best of the repeats. Reading and classifying the
files is not timed. Reported per corpus and per language: files, chunks, CPU seconds, the share of chunks of one
or two lines, and percentiles of lines and non-whitespace characters per chunk.
"""

from __future__ import annotations

import argparse
import inspect
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from mahavishnu_assets.ingest.chunk import ChunkOptions, chunk_text, detect_language
from mahavishnu_assets.ingest.discover import FileContent, compile_patterns, discover, inspect_file
from mahavishnu_assets.settings import IngestSettings


def _files(root: Path, ing: IngestSettings) -> list[tuple[str, str, str]]:
    found = discover(root, max_file_bytes=ing.max_file_bytes, exclude=compile_patterns(ing.exclude_patterns))
    out = []
    for candidate in found.candidates:
        result = inspect_file(
            candidate,
            max_file_bytes=ing.max_file_bytes,
            max_line_chars=ing.max_line_chars,
            detect_secrets=False,
            secret_plugins=None,
        )
        if isinstance(result, FileContent):
            out.append((candidate.path, detect_language(candidate.path, result.text), result.text))
    return out


def _percentiles(values: list[int]) -> dict[str, float]:
    if not values:
        return {}
    cuts = statistics.quantiles(values, n=20, method="inclusive") if len(values) > 1 else [values[0]] * 19
    return {
        "p5": cuts[0],
        "p25": cuts[4],
        "p50": cuts[9],
        "p75": cuts[14],
        "p95": cuts[18],
        "max": max(values),
    }


def measure(root: Path, repeats: int) -> dict[str, Any]:
    ing = IngestSettings()
    options = ChunkOptions(ing.chunk_lines, ing.chunk_lines_overlap, ing.max_chunk_chars)
    files = _files(root, ing)
    takes_path = "path" in inspect.signature(chunk_text).parameters
    best: dict[str, float] = {}
    chunks_of: dict[str, list[Any]] = {}
    for _ in range(repeats):
        seconds: dict[str, float] = defaultdict(float)
        for path, language, text in files:
            began = time.process_time()
            chunks = (
                chunk_text(text, language, options, path=path)
                if takes_path
                else chunk_text(text, language, options)
            )
            seconds[language] += time.process_time() - began
            chunks_of[path] = chunks
        for language, value in seconds.items():
            best[language] = min(best.get(language, value), value)
    by_language: dict[str, dict[str, Any]] = {}
    languages = sorted({language for _, language, _ in files})
    every_lines: list[int] = []
    every_chars: list[int] = []
    for language in languages:
        lines = [
            c.end_line - c.start_line + 1
            for path, lang, _ in files
            if lang == language
            for c in chunks_of[path]
        ]
        chars = [
            sum(not ch.isspace() for ch in c.content)
            for path, lang, _ in files
            if lang == language
            for c in chunks_of[path]
        ]
        every_lines += lines
        every_chars += chars
        by_language[language] = {
            "files": sum(1 for _, lang, _ in files if lang == language),
            "chunks": len(lines),
            "cpu_seconds": round(best.get(language, 0.0), 3),
            "share_le_2_lines": round(sum(n <= 2 for n in lines) / len(lines), 4) if lines else 0.0,
            "lines": _percentiles(lines),
            "nonspace_chars": _percentiles(chars),
        }
    return {
        "corpus": str(root),
        "files": len(files),
        "chunks": len(every_lines),
        "cpu_seconds": round(sum(best.values()), 3),
        "share_le_2_lines": round(sum(n <= 2 for n in every_lines) / max(1, len(every_lines)), 4),
        "lines": _percentiles(every_lines),
        "nonspace_chars": _percentiles(every_chars),
        "languages": by_language,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    for path in args.paths:
        print(json.dumps(measure(path.resolve(), args.repeats), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
