"""Symbols on real PostgreSQL: stored with their files and updated incrementally, `--mode symbol` lookups, the
`symbol` of every search result, and a definition's chunk found by its name."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mahavishnu_assets.cli import main
from mahavishnu_assets.database.pool import Database
from mahavishnu_assets.database.target import ConnectTarget
from mahavishnu_assets.errors import SearchError
from mahavishnu_assets.ingest.pipeline import ingest_repository
from mahavishnu_assets.memory.snapshots import SnapshotManager
from mahavishnu_assets.search.core import search
from mahavishnu_assets.search.filters import SearchFilters
from mahavishnu_assets.search.service import search_text
from mahavishnu_assets.search.sql import definition_words_statement, spelled_name_statement
from mahavishnu_assets.search.symbols import find_symbols
from mahavishnu_assets.settings import Settings
from mahavishnu_assets.testing.ollama_stub import OllamaStub
from tests import ingest_helpers
from tests.ingest_helpers import commit_all, fingerprint, ingest_settings, make_repo, write_files

stub = ingest_helpers.stub  # the fixture

QUERY_PY = '''\
"""Query sets."""

import itertools


class QuerySet:
    """A lazy database lookup."""

    def __init__(self, model=None):
        self.model = model

    def filter(self, *args, **kwargs):
        """Return a new QuerySet of the matching rows."""
        return self._filter_or_exclude(False, args, kwargs)

    def _filter_or_exclude(self, negate, args, kwargs):
        clone = self._chain()
        return clone


def get_random_secret_key():
    """A 50-character random string."""
    return "".join(itertools.repeat("x", 50))


def filter(items):
    return [i for i in items if i]
'''

ROUTER_RS = """\
pub struct Router {
    routes: Vec<String>,
}

impl Router {
    pub fn handle(&self, path: &str) -> bool {
        self.routes.iter().any(|r| r == path)
    }
}
"""

SERVER_GO = """\
package server

type Server struct{ addr string }

func (s *Server) ListenAndServe() error {
	return nil
}
"""


def files() -> dict[str, str | bytes]:
    return {
        "db/query.py": QUERY_PY,
        "src/router.rs": ROUTER_RS,
        "net/server.go": SERVER_GO,
        "README.md": "# Demo\n\nNothing to define here.\n",
    }


async def stored_symbols(db: Database, path: str) -> list[tuple[str, str, int, int]]:
    async with db.connection() as conn:
        rows = await conn.fetch(
            """SELECT s.qualified_name, s.kind, s.start_line, s.end_line FROM mahavishnu.symbols s
               WHERE s.path = $1 ORDER BY s.start_line, s.qualified_name""",
            path,
        )
    return [tuple(r) for r in rows]  # type: ignore[misc]


async def test_symbols_are_stored_with_their_file_and_follow_edits_and_deletes(
    db: Database, database: ConnectTarget, tmp_path: Path, stub: OllamaStub
) -> None:
    repo = make_repo(tmp_path / "repo", files())
    settings = ingest_settings(database, tmp_path / "home", stub.url)
    await ingest_repository(db, settings, repo, name="demo")
    assert await stored_symbols(db, "db/query.py") == [
        ("QuerySet", "class", 6, 18),
        ("QuerySet.__init__", "method", 9, 10),
        ("QuerySet.filter", "method", 12, 14),
        ("QuerySet._filter_or_exclude", "method", 16, 18),
        ("get_random_secret_key", "function", 21, 23),
        ("filter", "function", 26, 27),
    ]
    assert await stored_symbols(db, "src/router.rs") == [
        ("Router", "struct", 1, 3),
        ("Router.handle", "method", 6, 8),
    ]
    assert await stored_symbols(db, "net/server.go") == [
        ("Server", "struct", 3, 3),
        ("Server.ListenAndServe", "method", 5, 7),
    ]
    assert await stored_symbols(db, "README.md") == []
    async with db.connection() as conn:
        chunk_symbols = await conn.fetch(
            "SELECT symbol, context FROM mahavishnu.chunks WHERE path = 'src/router.rs' ORDER BY chunk_index"
        )
    assert [r["symbol"] for r in chunk_symbols] == [None]  # one chunk: the whole file
    assert chunk_symbols[0]["context"] == "File: src/router.rs (rust)"

    # An edit replaces the file's symbols; a deleted file takes its symbols along.
    edited = QUERY_PY.replace("def get_random_secret_key():", "def make_secret(length=50):")
    write_files(repo, {"db/query.py": "# moved down\n\n" + edited})
    (repo / "net/server.go").unlink()
    commit_all(repo, "edit")
    await ingest_repository(db, settings, repo, name="demo")
    symbols = await stored_symbols(db, "db/query.py")
    assert ("make_secret", "function", 23, 25) in symbols
    assert not any(name == "get_random_secret_key" for name, *_ in symbols)
    assert await stored_symbols(db, "net/server.go") == []
    async with db.connection() as conn:
        orphans = await conn.fetchval(
            """SELECT count(*) FROM mahavishnu.symbols s
               WHERE NOT EXISTS (SELECT 1 FROM mahavishnu.source_files f WHERE f.id = s.file_id)"""
        )
        assert orphans == 0
        # The incremental result is what a clean ingest of the same tree gives (symbols included).
        incremental = await fingerprint(conn, include_commit=False)
        await conn.execute("TRUNCATE mahavishnu.repositories, mahavishnu.embeddings CASCADE")
    await ingest_repository(db, settings, repo, name="demo")
    async with db.connection() as conn:
        assert await fingerprint(conn, include_commit=False) == incremental


async def ingested(db: Database, database: ConnectTarget, tmp_path: Path, stub: OllamaStub) -> Settings:
    repo = make_repo(tmp_path / "repo", files())
    settings = ingest_settings(database, tmp_path / "home", stub.url)
    await ingest_repository(db, settings, repo, name="demo")
    return settings


def where(result: object) -> list[tuple[str | None, str | None, int]]:
    return [(h.symbol, h.kind, h.start_line) for h in result.results]  # type: ignore[attr-defined]


async def test_symbol_mode_is_exact_then_case_insensitive_then_prefix(
    db: Database, database: ConnectTarget, tmp_path: Path, stub: OllamaStub
) -> None:
    await ingested(db, database, tmp_path, stub)
    # A bare name: the module-level definition (its qualified name is the name) before the method.
    result = await search(db, mode="symbol", text="filter", k=10)
    assert result.mode == "symbol"
    assert where(result) == [("filter", "function", 26), ("QuerySet.filter", "method", 12)]
    # The qualified name, a dotted tail of it, other separators, other case, a prefix.
    assert where(await search(db, mode="symbol", text="QuerySet.filter", k=1)) == [
        ("QuerySet.filter", "method", 12)
    ]
    assert where(await search(db, mode="symbol", text="Router::handle", k=5)) == [
        ("Router.handle", "method", 6)
    ]
    assert where(await search(db, mode="symbol", text="server.ListenAndServe()", k=5)) == [
        ("Server.ListenAndServe", "method", 5)
    ]
    ranked = await search(db, mode="symbol", text="queryset", k=10)
    assert [h.symbol for h in ranked.results][:1] == ["QuerySet"]
    assert {h.symbol for h in ranked.results} == {
        "QuerySet",
        "QuerySet.__init__",
        "QuerySet.filter",
        "QuerySet._filter_or_exclude",
    }
    scores = [h.score for h in ranked.results]
    assert scores == sorted(scores, reverse=True) and scores[0] > scores[1]
    prefix = await search(db, mode="symbol", text="get_rand", k=10)
    assert where(prefix) == [("get_random_secret_key", "function", 21)]
    assert (await search(db, mode="symbol", text="filter_", k=10)).results == []
    # LIKE wildcards and SQL are plain text.
    for name in ("%", "_ilter", "QuerySet'; DROP TABLE mahavishnu.symbols; --", "f%r"):
        assert (await search(db, mode="symbol", text=name, k=10)).results == []
    # Filters apply.
    assert where(await search(db, mode="symbol", text="filter", filters=SearchFilters(language="rust"))) == []
    unknown = await search(db, mode="symbol", text="filter", filters=SearchFilters(repo="nope"))
    assert unknown.results == [] and unknown.notices
    # Bad names are clear errors.
    for bad in ("", "   ", "()", "x" * 600):
        with pytest.raises(SearchError):
            await search(db, mode="symbol", text=bad)


async def test_a_definition_is_found_by_its_name_as_its_part_of_the_stored_chunk(
    db: Database, database: ConnectTarget, tmp_path: Path, stub: OllamaStub
) -> None:
    settings = await ingested(db, database, tmp_path, stub)
    hit = (await search(db, mode="symbol", text="get_random_secret_key", k=1)).results[0]
    assert (hit.repo, hit.path, hit.start_line, hit.end_line) == ("demo", "db/query.py", 21, 23)
    assert hit.content == "\n".join(QUERY_PY.split("\n")[20:23])
    assert hit.content.startswith("def get_random_secret_key():")
    async with db.connection() as conn:
        chunk = await conn.fetchrow(
            "SELECT start_line, end_line, content FROM mahavishnu.chunks WHERE id = $1", hit.chunk_id
        )
        found = await find_symbols(conn, "get_random_secret_key", repo="demo")
        assert await find_symbols(conn, "get_random_secret_key", repo="other") == []
        assert [h.to_dict() for h in await find_symbols(conn, "routeR.HANDLE")] == [
            {
                "repo": "demo",
                "path": "src/router.rs",
                "start_line": 6,
                "end_line": 8,
                "kind": "method",
                "symbol": "Router.handle",
                "name": "handle",
                "language": "rust",
                # The qualified name ignoring case (0.8), less the length tie-breaker.
                "score": pytest.approx(0.8 - len("Router.handle") / 10000),
            }
        ]
    assert chunk["start_line"] <= 21 and chunk["end_line"] >= 23 and hit.content in chunk["content"]
    assert [(h.symbol, h.kind, h.start_line, h.end_line) for h in found] == [
        ("get_random_secret_key", "function", 21, 23)
    ]
    # The same name through `mahavishnu search`'s service (no embedder involved) and as text: every result
    # names its enclosing symbol (or null).
    out = await search_text(db, settings, "get_random_secret_key", mode="symbol", k=3)
    assert out["results"][0]["symbol"] == "get_random_secret_key" and out["results"][0]["kind"] == "function"
    for mode in ("text", "vector", "hybrid"):
        out = await search_text(db, settings, "random secret key", mode=mode, k=10)
        assert out["results"], mode
        assert all("symbol" in h for h in out["results"])
        assert all(h["symbol"] is None or isinstance(h["symbol"], str) for h in out["results"])


async def test_results_name_the_definition_a_chunk_is_inside_of(
    db: Database, database: ConnectTarget, tmp_path: Path, stub: OllamaStub
) -> None:
    body = "\n".join(f"        total += compute_step(value, {i}, 'label number {i}')" for i in range(80))
    big = f"class Engine:\n    def run(self, value):\n        total = 0\n{body}\n        return total\n"
    repo = make_repo(tmp_path / "repo", {"engine.py": big})
    settings = ingest_settings(database, tmp_path / "home", stub.url)
    await ingest_repository(db, settings, repo, name="engine")
    result = await search(db, mode="text", text="label number 70", k=3)
    top = result.results[0]
    assert top.start_line > 2 and top.symbol == "Engine.run"
    async with db.connection() as conn:
        context = await conn.fetchval("SELECT context FROM mahavishnu.chunks WHERE id = $1", top.chunk_id)
    assert context == "File: engine.py (python)\nSymbol: Engine.run\nInside: def run(self, value):"
    # What was embedded for it is the model's document prefix, the header, then the exact lines.
    assert stub.times_embedded("search_document: " + context + "\n" + top.content) == 1


async def test_a_snapshot_restores_the_symbols_of_its_files(
    db: Database, database: ConnectTarget, tmp_path: Path, stub: OllamaStub
) -> None:
    repo = make_repo(tmp_path / "repo", files())
    settings = ingest_settings(database, tmp_path / "home", stub.url)
    await ingest_repository(db, settings, repo, name="demo")
    before = await stored_symbols(db, "db/query.py")
    snapshots = SnapshotManager(db, settings)
    taken = await snapshots.create("before-edit")
    write_files(repo, {"db/query.py": QUERY_PY.replace("def filter(items):", "def keep(items):")})
    commit_all(repo, "rename")
    await ingest_repository(db, settings, repo, name="demo")
    assert ("keep", "function", 26, 27) in await stored_symbols(db, "db/query.py")
    await snapshots.restore(taken["id"])
    assert await stored_symbols(db, "db/query.py") == before


def test_the_cli_looks_symbols_up(
    database: ConnectTarget,
    settings_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("MAHAVISHNU_DATABASE_URL", database.libpq_url().get_secret_value())
    monkeypatch.setenv("MAHAVISHNU_EMBEDDER", "local")
    monkeypatch.setenv("MAHAVISHNU_HOME", str(tmp_path / "home"))
    repo = make_repo(tmp_path / "repo", files())

    def run(*argv: str) -> tuple[int, dict]:
        code = main([*argv, "--json"])
        return code, json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    assert run("ingest", str(repo), "--name", "demo")[0] == 0
    code, out = run("search", "QuerySet.filter", "--mode", "symbol")
    assert code == 0 and out["mode"] == "symbol"
    first = out["results"][0]
    assert {k: first[k] for k in ("repo", "path", "start_line", "end_line", "symbol", "kind")} == {
        "repo": "demo",
        "path": "db/query.py",
        "start_line": 12,
        "end_line": 14,
        "symbol": "QuerySet.filter",
        "kind": "method",
    }
    assert first["content"].startswith("    def filter(self, *args, **kwargs):")
    code, out = run("search", "itertools", "--mode", "text")
    assert code == 0 and out["results"] and all("symbol" in h for h in out["results"])
    code, out = run("search", "  ", "--mode", "symbol")
    assert code != 0 and out["error"] == "search_error"


async def test_hybrid_ranks_the_definition_a_name_query_names_first(
    db: Database, database: ConnectTarget, tmp_path: Path, stub: OllamaStub
) -> None:
    """`Database` is used all over (each use a lexical and vector match, some more often than the definition
    mentions it); the class definition still comes first, for the plain and the qualified name."""
    users = {
        f"app/user_{i}.py": (
            "from app.db import Database\n\n\n"
            f"def open_{i}():\n    database = Database()\n    database = Database(database)\n"
            "    return Database.connect(database)\n"
        )
        for i in range(12)
    }
    definition = (
        "class Database:\n    def __init__(self, url=None):\n        self.url = url\n\n"
        "    def connect(self):\n        return self.url\n"
    )
    repo = make_repo(tmp_path / "repo", {"app/db.py": definition, **users})
    settings = ingest_settings(database, tmp_path / "home", stub.url)
    await ingest_repository(db, settings, repo, name="names")
    for query, line in (("Database", 1), ("Database.connect", 5), ("database.CONNECT", 5)):
        out = await search_text(db, settings, query, mode="hybrid", k=5)
        top = out["results"][0]
        assert (top["path"], top["start_line"] <= line <= top["end_line"]) == ("app/db.py", True), query
    # A sentence is no name: no definition is pushed up for it.
    out = await search_text(db, settings, "open a database connection", mode="hybrid", k=5)
    assert out["results"]


async def test_hybrid_puts_up_the_definition_a_question_spells(
    db: Database, database: ConnectTarget, tmp_path: Path, stub: OllamaStub
) -> None:
    """A question whose words spell a name ("get the color system": `color_system`) meets that definition's
    chunk among chunks that only call it, even when the callers repeat the words more often."""
    callers = {
        f"app/report_{i}.py": (
            f"def report_{i}(console):\n    mode = console.color_system()\n"
            "    if console.color_system() == 'truecolor':\n        return 'color system: true color'\n"
            "    return mode\n"
        )
        for i in range(12)
    }
    definition = "class Console:\n" + "".join(
        f"    def {name}(self):\n        return self._{name}\n\n"
        for name in ("encoding", "color_system", "width", "height", "is_terminal", "size")
    )
    repo = make_repo(tmp_path / "repo", {"app/console.py": definition, **callers})
    settings = ingest_settings(database, tmp_path / "home", stub.url)
    await ingest_repository(db, settings, repo, name="spelled")
    question = "Get the color system of the terminal."

    async def top(name_weight: float) -> list[str]:
        weights = {"name_weight": name_weight, "definition_weight": 0.0}
        tuned = settings.model_copy(update={"search": settings.search.model_copy(update=weights)})
        out = await search_text(db, tuned, question, mode="hybrid", k=5)
        return [r["path"] for r in out["results"]]

    assert (await top(settings.search.name_weight))[0] == "app/console.py"
    assert (await top(0.0))[0] != "app/console.py"
    # A line of code is no question: its names are calls, and the lines holding it come first.
    out = await search_text(db, settings, "mode = console.color_system()", mode="hybrid", k=1)
    assert out["results"][0]["path"].startswith("app/report_")
    # A name query keeps its own lookup.
    out = await search_text(db, settings, "color_system", mode="hybrid", k=1)
    assert out["results"][0]["path"] == "app/console.py"


async def test_hybrid_puts_up_the_definition_made_of_a_questions_words(
    db: Database, database: ConnectTarget, tmp_path: Path, stub: OllamaStub
) -> None:
    """ "Check if the console is writing to a terminal": `Console.is_terminal`, whose words are the question's
    but not side by side, comes first among chunks that repeat the question's words more often; without the
    definitions' words it does not."""
    callers = {
        f"app/report_{i}.py": (
            f"def report_{i}(console, terminal):\n    # check the console is writing to a terminal\n"
            "    if console.is_terminal and terminal.writing:\n        return check(console, terminal)\n"
            "    return console.writing\n"
        )
        for i in range(12)
    }
    definition = "class Console:\n" + "".join(
        f"    def {name}(self):\n        return self._{name}\n\n"
        for name in ("encoding", "width", "height", "is_terminal", "size")
    )
    repo = make_repo(tmp_path / "repo", {"app/console.py": definition, **callers})
    settings = ingest_settings(database, tmp_path / "home", stub.url)
    await ingest_repository(db, settings, repo, name="words")
    question = "Check if the console is writing to a terminal."

    async def top(definition_weight: float) -> list[str]:
        weights = {"name_weight": 0.0, "definition_weight": definition_weight}
        tuned = settings.model_copy(update={"search": settings.search.model_copy(update=weights)})
        out = await search_text(db, tuned, question, mode="hybrid", k=5)
        return [r["path"] for r in out["results"]]

    assert (await top(settings.search.definition_weight))[0] == "app/console.py"
    assert (await top(0.0))[0] != "app/console.py"


async def test_definition_words_rank_whole_names_first_and_take_any_text(
    db: Database, database: ConnectTarget, tmp_path: Path, stub: OllamaStub
) -> None:
    """The statement alone: the more of a name the question's words make, the better; words of no
    definition, stop words only, SQL and filters are plain answers."""
    definitions = {
        "a.py": "def secret_key():\n    return 1\n",
        "b.py": "def get_random_secret_key():\n    return 2\n",
        "c.py": "def key_value_store_from_secret_file_path():\n    return 3\n",
        "d.py": "def unrelated():\n    return 4\n",
    }
    repo = make_repo(tmp_path / "repo", definitions)
    settings = ingest_settings(database, tmp_path / "home", stub.url)
    await ingest_repository(db, settings, repo, name="words")

    async def found(text: str, filters: SearchFilters | None = None) -> list[str]:
        statement = definition_words_statement(text, 10, filters or SearchFilters(), None)
        async with db.connection() as conn:
            rows = await conn.fetch(statement.sql, *statement.args)
        return [r["path"] for r in rows]

    assert await found("Return the secret key.") == ["a.py", "b.py", "c.py"]
    assert (await found("Get a random secret key."))[0] == "b.py"
    assert await found("Read the store's values from a file path.") == ["c.py"]
    for text in ("the of and it", "zzz qqq", "'; DROP TABLE mahavishnu.symbols; --", "%_\\"):
        assert await found(text) == []
    assert await found("Return the secret key.", SearchFilters(language="rust")) == []
    assert await found("Return the secret key.", SearchFilters(path_prefix="b")) == ["b.py"]


async def test_a_definition_whose_first_chunk_is_excluded_answers_by_the_rest_of_it(
    db: Database, database: ConnectTarget, tmp_path: Path, stub: OllamaStub
) -> None:
    """The definition lists return a definition's first chunk; excluded (as the quality measure excludes a
    docstring's chunk), its next one, never the excluded chunk and never a chunk outside the definition."""
    body = "".join(f"    total_{i} = ledger.rows[{i}] + ledger.rows[{i + 1}] * {i}\n" for i in range(120))
    source = f"def rotate_ledger_rows(ledger):\n{body}    return ledger\n\n\ndef other():\n    return 1\n"
    repo = make_repo(tmp_path / "repo", {"app/ledger.py": source})
    settings = ingest_settings(database, tmp_path / "home", stub.url, max_chunk_chars=400)
    await ingest_repository(db, settings, repo, name="parts")
    async with db.connection() as conn:
        chunks = await conn.fetch(
            "SELECT id, start_line, end_line FROM mahavishnu.chunks ORDER BY start_line"
        )
        assert len(chunks) >= 3

        async def first(statement_of: Any, excluded: tuple[int, ...]) -> tuple[int, int]:
            statement = statement_of(SearchFilters(exclude_chunk_ids=excluded))
            row = (await conn.fetch(statement.sql, *statement.args))[0]
            return row["id"], row["start_line"]

        def words(filters: SearchFilters) -> Any:
            return definition_words_statement("Rotate the ledger's rows.", 10, filters, None)

        def spelled(filters: SearchFilters) -> Any:
            return spelled_name_statement(["rotateledgerrows"], 10, filters, None)

        for statement_of in (words, spelled):
            assert await first(statement_of, ()) == (chunks[0]["id"], 1)
            assert await first(statement_of, (chunks[0]["id"],)) == (chunks[1]["id"], chunks[1]["start_line"])
            both = (chunks[0]["id"], chunks[1]["id"])
            assert await first(statement_of, both) == (chunks[2]["id"], chunks[2]["start_line"])


async def test_a_question_ranks_the_code_above_the_tests_that_call_it(
    db: Database, database: ConnectTarget, tmp_path: Path, stub: OllamaStub
) -> None:
    """Tests repeat the words of the code they call; a description of what code does asks for the code, unless
    it speaks of tests. A name or a line of code is found wherever it is."""
    code = "def rotate_ledger(ledger, keep):\n    rows = ledger.rows[-keep:]\n    return rows\n"
    tests = {
        f"tests/test_ledger_{i}.py": (
            f"def test_rotate_ledger_keeps_newest_rows_{i}(ledger):\n    # rotate the ledger and keep the newest rows\n"
            "    rows = rotate_ledger(ledger, keep=3)\n    assert rows == ledger.rows[-3:]\n"
            "    assert rotate_ledger(ledger, keep=0) == []\n"
        )
        for i in range(3)
    }
    repo = make_repo(tmp_path / "repo", {"app/ledger.py": code, **tests})
    settings = ingest_settings(database, tmp_path / "home", stub.url)
    await ingest_repository(db, settings, repo, name="ledger")

    async def top(query: str, test_weight: float) -> str:
        weights = {"test_weight": test_weight}
        tuned = settings.model_copy(update={"search": settings.search.model_copy(update=weights)})
        out = await search_text(db, tuned, query, mode="hybrid", k=4)
        return str(out["results"][0]["path"])

    question = "Rotate the ledger, keeping the newest rows."
    assert await top(question, 1.0) != "app/ledger.py"  # without the prior the tests win
    assert await top(question, settings.search.test_weight) == "app/ledger.py"
    assert (await top("Test rotating the ledger and keeping its newest rows.", 0.3)).startswith("tests/")
    assert (await top("test_rotate_ledger_keeps_newest_rows_1", 0.3)) == "tests/test_ledger_1.py"
    assert (await top("rows = rotate_ledger(ledger, keep=3)", 0.3)).startswith("tests/")
