"""The benchmarks' shared results module and run_all's selection, without running a benchmark."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from mahavishnu_assets.database.pool import connect
from mahavishnu_assets.database.target import ConnectTarget

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import results  # noqa: E402
import run_all  # noqa: E402

FILE = """# Benchmark results

Preamble sentence.

## Alpha

alpha body
| a | table |

## Beta

beta body

```
## not a heading: inside a code block
```

### Beta detail

more beta

## Gamma

gamma body
"""


@pytest.fixture
def results_file(tmp_path: Path) -> Path:
    path = tmp_path / "RESULTS.md"
    path.write_text(FILE, encoding="utf-8")
    return path


def section_text(text: str, title: str) -> str:
    return dict(results.split_sections(text)[1])[title]


def test_write_section_replaces_only_its_section(results_file: Path) -> None:
    results.write_section("Beta", "new beta\n\n| x | y |", results_file)

    text = results_file.read_text(encoding="utf-8")
    preamble, sections = results.split_sections(text)
    assert [t for t, _ in sections] == ["Alpha", "Beta", "Gamma"]
    assert section_text(text, "Beta") == "## Beta\n\nnew beta\n\n| x | y |\n\n"
    # The others, the code block's line and the preamble are as they were.
    assert section_text(text, "Alpha") == section_text(FILE, "Alpha")
    assert section_text(text, "Gamma") == section_text(FILE, "Gamma")
    assert preamble == results.split_sections(FILE)[0]
    assert "not a heading" not in text and "Beta detail" not in text


def test_a_fenced_heading_stays_in_its_section(results_file: Path) -> None:
    results.write_section("Gamma", "gamma again", results_file)

    assert "## not a heading: inside a code block" in section_text(results_file.read_text(), "Beta")


def test_write_section_appends_a_new_section_and_creates_the_file(results_file: Path, tmp_path: Path) -> None:
    results.write_section("Delta", "delta body", results_file)
    assert results.section_titles(results_file) == ["Alpha", "Beta", "Gamma", "Delta"]
    assert results_file.read_text().endswith("## Gamma\n\ngamma body\n\n## Delta\n\ndelta body\n")

    fresh = tmp_path / "sub" / "NEW.md"
    results.write_section("Only", "body", fresh)
    assert fresh.read_text() == "# Benchmark results\n\n## Only\n\nbody\n"


def test_a_second_write_of_the_same_section_changes_nothing_else(results_file: Path) -> None:
    results.write_section("Alpha", "one", results_file)
    first = results_file.read_text()
    results.write_section("Alpha", "one", results_file)
    assert results_file.read_text() == first
    results.write_section("Alpha", "two", results_file)
    assert results_file.read_text() == first.replace("## Alpha\n\none\n", "## Alpha\n\ntwo\n")


def test_write_section_refuses_a_title_with_hashes_or_lines(results_file: Path) -> None:
    for title in ("## Beta", "two\nlines", ""):
        with pytest.raises(ValueError):
            results.write_section(title, "x", results_file)
    assert results_file.read_text() == FILE


def test_write_preamble_keeps_every_section(results_file: Path) -> None:
    results.write_preamble("# Benchmark results\n\nLast run: today.", results_file)

    text = results_file.read_text()
    assert text.startswith("# Benchmark results\n\nLast run: today.\n\n## Alpha\n")
    assert text.endswith(FILE[FILE.index("## Alpha") :])
    with pytest.raises(ValueError):
        results.write_preamble("## Not allowed", results_file)


def test_a_quick_run_writes_a_marked_section_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, results_file: Path
) -> None:
    quick_file = tmp_path / "quick.md"
    monkeypatch.setattr(results, "RESULTS", results_file)
    monkeypatch.setattr(results, "QUICK_RESULTS", quick_file)
    monkeypatch.setenv(results.QUICK_ENV, "1")

    written = results.write_section("Alpha", "smoke figures")

    assert written == quick_file
    assert results_file.read_text() == FILE
    assert (
        section_text(quick_file.read_text(), "Alpha")
        == f"## Alpha\n\n{results.QUICK_NOTE}\n\nsmoke figures\n"
    )
    monkeypatch.delenv(results.QUICK_ENV)
    assert results.results_path() == results_file


def test_run_facts_has_the_fields() -> None:
    facts = results.run_facts()

    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", facts["date"])
    assert facts["time"].startswith(facts["date"]) and facts["time"].endswith("Z")
    machine = facts["machine"]
    assert machine["arch"] and machine["cpu"] and machine["os"]
    assert machine["cores"] >= 1 and machine["ram_gb"] >= 1
    assert len(facts["load_average"]) == 3
    assert re.fullmatch(r"3\.\d+\.\d+", facts["python"])
    # Installed with the project: their versions are named; an absent package is left out.
    assert {"dagster", "asyncpg", "ollama", "llama-index-core", "pgvector"} <= facts["packages"].keys()
    assert all(re.match(r"\d", v) for v in facts["packages"].values())
    assert "not-a-package-anywhere" not in results.package_versions(["not-a-package-anywhere", "asyncpg"])
    assert re.fullmatch(r"[0-9a-f]{7,}", facts["commit"]) and isinstance(facts["dirty"], bool)
    assert "server" not in facts
    line = results.facts_markdown(facts, load_end=1.5)
    assert facts["date"] in line and facts["commit"] in line and "1.5 at the end" in line


async def test_run_facts_names_the_server_versions(database: ConnectTarget) -> None:
    conn = await connect(database)
    try:
        server = await results.server_versions(conn)
    finally:
        await conn.close()

    assert re.match(r"\d+\.\d+", server["postgresql"]) and re.fullmatch(r"\d+\.\d+\.\d+", server["pgvector"])
    facts = results.run_facts(server)
    assert facts["server"] == server
    assert f"PostgreSQL {server['postgresql']} + pgvector {server['pgvector']}" in results.facts_markdown(
        facts
    )


def test_the_commit_is_marked_dirty_by_changes_other_than_results(tmp_path: Path) -> None:
    def git(*args: str) -> None:
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@x", *args],
            cwd=tmp_path,
            check=True,
            capture_output=True,
        )

    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "RESULTS.md").write_text("a\n")
    (tmp_path / "code.py").write_text("a\n")
    git("init", "-q")
    git("add", "-A")
    git("commit", "-q", "-m", "one")

    head, dirty = results.git_commit(tmp_path)
    assert re.fullmatch(r"[0-9a-f]{7,}", head) and not dirty
    (tmp_path / "benchmarks" / "RESULTS.md").write_text("b\n")
    assert results.git_commit(tmp_path) == (head, False)
    (tmp_path / "code.py").write_text("b\n")
    assert results.git_commit(tmp_path) == (head, True)


# -- run_all ---------------------------------------------------------------------------------------------------
PRESENT = run_all.Benchmark("one", "load_bench.py", "Pool load", quick=("--rows", "10"))
OTHER = run_all.Benchmark("two", "snapshot_bench.py", "Snapshots")
ABSENT = run_all.Benchmark("three", "not_a_benchmark_here.py", "Nowhere", quick=("--x",))
TRIO = (PRESENT, OTHER, ABSENT)


def names(chosen: list[run_all.Benchmark]) -> list[str]:
    return [b.name for b in chosen]


def test_select_runs_every_present_benchmark_in_order() -> None:
    chosen, left = run_all.select(None, None, benchmarks=TRIO)
    assert names(chosen) == ["one", "two"]
    assert left == [(ABSENT, "not_a_benchmark_here.py is not in this checkout")]


def test_select_only_and_skip() -> None:
    chosen, left = run_all.select(["two", "one"], None, benchmarks=TRIO)
    assert names(chosen) == ["one", "two"]  # the fixed order, not the command line's
    assert [(b.name, why) for b, why in left] == [("three", "not in --only")]

    chosen, left = run_all.select(None, ["one"], benchmarks=TRIO)
    assert names(chosen) == ["two"]
    assert ("one", "--skip") in [(b.name, why) for b, why in left]

    chosen, _ = run_all.select(["one", "two"], ["two"], benchmarks=TRIO)
    assert names(chosen) == ["one"]


def test_select_refuses_unknown_and_absent_names() -> None:
    with pytest.raises(run_all.SelectionError, match="unknown benchmark four"):
        run_all.select(["four"], None, benchmarks=TRIO)
    with pytest.raises(run_all.SelectionError, match="unknown benchmark five"):
        run_all.select(None, ["five"], benchmarks=TRIO)
    with pytest.raises(run_all.SelectionError, match="three: the script is not in this checkout"):
        run_all.select(["three"], None, benchmarks=TRIO)


def test_a_quick_run_leaves_out_a_benchmark_without_quick_sizes() -> None:
    chosen, left = run_all.select(None, None, quick=True, benchmarks=TRIO)
    assert names(chosen) == ["one"]
    assert ("two", "no quick sizes known") in [(b.name, why) for b, why in left]


def test_commands_write_and_keep_a_quick_run_out_of_results() -> None:
    assert PRESENT.command(False)[1:] == [str(PRESENT.path), "--write"]
    assert PRESENT.command(True)[1:] == [str(PRESENT.path), "--rows", "10", "--write"]
    # A script that does not write through results.write_section gets no --write in a quick run.
    foreign = run_all.Benchmark("peer", "ingest_llamaindex_peer.py", "Peer", quick=("--y",))
    assert not foreign.shared_writer
    assert foreign.command(True)[1:] == [str(foreign.path), "--y"]
    assert foreign.command(False)[-1] == "--write"


def test_every_registered_script_takes_write_and_its_sizes() -> None:
    present = [b for b in run_all.BENCHMARKS if b.present]
    assert {"load", "snapshot", "index", "index-recall", "embed-decode", "ingest"} <= set(names(present))
    for b in present:
        source = b.path.read_text(encoding="utf-8")
        assert '"--write"' in source, b.name
        for flag in [a for a in (*b.args, *(b.quick or ())) if a.startswith("--")]:
            assert f'"{flag}"' in source, (b.name, flag)
    assert len({b.section for b in run_all.BENCHMARKS}) == len(run_all.BENCHMARKS)


def test_list_shows_every_benchmark_and_runs_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_all.main(["--list"]) == 0
    out = capsys.readouterr().out
    for b in run_all.BENCHMARKS:
        assert re.search(rf"^{re.escape(b.name)} +{re.escape(b.script)} ", out, re.M), b.name
    assert "not in this checkout" in out or all(b.present for b in run_all.BENCHMARKS)


def test_main_refuses_an_unknown_name(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        run_all.main(["--only", "nothing-by-this-name"])
    assert exit_.value.code == 2
    assert "unknown benchmark nothing-by-this-name" in capsys.readouterr().err


def test_the_header_lists_each_benchmark_with_its_status() -> None:
    facts = results.run_facts()
    outcomes = [run_all.Outcome(PRESENT, 75.0, 0, []), run_all.Outcome(OTHER, 2.5, 3, ["boom"])]
    text = run_all.header(facts, ["--only", "one", "two"], outcomes, [(ABSENT, "--skip")], quick=False)

    assert "`python benchmarks/run_all.py --only one two`, 1 min 18 s in all." in text
    assert "| one (`load_bench.py`) | Pool load | 1 min 15 s | ✅ ok |" in text
    assert "| two (`snapshot_bench.py`) | Snapshots | 2.5 s | ❌ failed (exit 3) |" in text
    assert "| three (`not_a_benchmark_here.py`) | Nowhere | | not run: --skip |" in text
    assert facts["commit"] in text and "\n## " not in text


def test_a_failed_benchmark_does_not_stop_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two tiny scripts stand for benchmarks: the failing one first, the run goes on, exits 1, says which."""
    bad, good = tmp_path / "bad.py", tmp_path / "good.py"
    bad.write_text("import sys\nprint('boom', sys.argv[1:])\nsys.exit(3)\n")
    good.write_text("import os, sys\nprint('fine', sys.argv[1:], os.environ.get('BENCH_QUICK'))\n")
    monkeypatch.setattr(
        run_all,
        "BENCHMARKS",
        (
            run_all.Benchmark("bad", str(bad), "Bad"),
            run_all.Benchmark("good", str(good), "Good", quick=("--small",)),
            ABSENT,
        ),
    )
    results_file = tmp_path / "RESULTS.md"
    results_file.write_text(FILE)
    monkeypatch.setattr(results, "RESULTS", results_file)

    async def no_server() -> dict[str, str]:
        return {"postgresql": "(test)", "pgvector": "(test)"}

    monkeypatch.setattr(run_all, "embedded_versions", no_server)

    assert run_all.main(["--skip", "three"]) == 1

    out = capsys.readouterr().out
    assert "[bad] boom ['--write']" in out and "[good] fine ['--write'] None" in out
    assert out.index("==> [1/2] bad") < out.index("==> [2/2] good")
    assert "FAILED bad (exit 3); its last lines:\n    boom ['--write']" in out
    assert out.rstrip().endswith("1 of 2 failed: bad")
    text = results_file.read_text()
    assert "❌ failed (exit 3) |" in text and "| good (`" in text and "✅ ok |" in text
    assert "| three (`not_a_benchmark_here.py`) | Nowhere | | not run: --skip |" in text
    assert "PostgreSQL (test) + pgvector (test)" in text
    assert text.endswith(FILE[FILE.index("## Alpha") :])

    # A quick run passes the quick sizes and BENCH_QUICK, and writes its header to the quick file.
    quick_file = tmp_path / "quick.md"
    monkeypatch.setattr(results, "QUICK_RESULTS", quick_file)
    assert run_all.main(["--quick", "--only", "good"]) == 0
    assert "[good] fine ['--small'] 1" in capsys.readouterr().out
    assert "Benchmark results (quick smoke runs)" in quick_file.read_text()
    assert results_file.read_text() == text
