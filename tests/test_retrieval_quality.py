"""Retrieval quality on known-item queries (search.quality): the parsing and scoring parts as plain functions,
then sampling and measuring on a repository ingested into a real PostgreSQL through the Ollama stub."""

from __future__ import annotations

from pathlib import Path

import pytest

from mahavishnu_assets.database.pool import Database
from mahavishnu_assets.database.target import ConnectTarget
from mahavishnu_assets.errors import SearchError
from mahavishnu_assets.ingest.pipeline import ingest_repository
from mahavishnu_assets.search.filters import SearchFilters
from mahavishnu_assets.search.quality import (
    DOCSTRING,
    KINDS,
    LINE,
    NAME,
    KnownItem,
    docstring_of,
    first_sentence,
    is_code_line,
    measure_quality,
    quality_drops,
    sample_known_items,
    score,
)
from mahavishnu_assets.search.service import search_text
from mahavishnu_assets.settings import Settings
from mahavishnu_assets.testing.ollama_stub import OllamaStub
from tests import ingest_helpers
from tests.ingest_helpers import ingest_settings, make_repo
from tests.quality_corpus import INVENTORY_PY, files

stub = ingest_helpers.stub  # the fixture


def numbered(text: str) -> dict[int, str]:
    return dict(enumerate(text.split("\n"), 1))


# -- plain functions ----------------------------------------------------------------------------------------------
def test_docstring_of_reads_python_docstrings_and_leading_comment_blocks() -> None:
    python = numbered(
        "class A:\n"
        "    @property\n"
        "    def size(self):\n"
        '        """\n'
        "        Count the rows of the table\n"
        "        without loading them. Then more.\n"
        '        """\n'
        "        return 1\n"
    )
    assert docstring_of(python, 2, 8, "python") == ("Count the rows of the table without loading them.", 5, 6)
    go = numbered(
        "package p\n\n// Parse reads a config file from disk and checks it.\n// More.\nfunc Parse() {\n}\n"
    )
    assert docstring_of(go, 5, 6, "go") == ("Parse reads a config file from disk and checks it.", 3, 3)
    rust = numbered("/// Opens the door to the garden shed.\n#[inline]\npub fn open() {}\n")
    assert docstring_of(rust, 3, 3, "rust") == ("Opens the door to the garden shed.", 1, 1)
    jsdoc = numbered("/**\n * Sum every price in the cart!\n * @param cart\n */\nfunction sum(cart) {}\n")
    assert docstring_of(jsdoc, 5, 5, "javascript") == ("Sum every price in the cart!", 2, 2)
    # Python: a leading `#` comment when there is no docstring.
    commented = numbered(
        "# Merge two sorted lists into one sorted list.\ndef merge(a, b):\n    return a + b\n"
    )
    assert docstring_of(commented, 2, 3, "python") == ("Merge two sorted lists into one sorted list.", 1, 1)
    # Too short, a pragma, nothing above: no query.
    assert docstring_of(numbered('def f():\n    """Return it."""\n'), 1, 2, "python") is None
    assert (
        docstring_of(
            numbered("// eslint-disable-next-line no-unused-vars please\nfunction f() {}\n"), 2, 2, "js"
        )
        is None
    )
    assert docstring_of(numbered("x = 1\ndef f():\n    return 1\n"), 2, 3, "python") is None
    endless = "word " * 100
    assert docstring_of(numbered(f'def f():\n    """{endless}"""\n'), 1, 2, "python") is None
    # Text that is not Python (a broken method body) gives no docstring rather than an error.
    assert (
        docstring_of(numbered('def f(:\n    """Some words in a sentence here."""\n'), 1, 2, "python") is None
    )


def test_first_sentence_stops_at_the_first_sentence_of_the_first_paragraph() -> None:
    assert first_sentence("  Load the table.  Then\n  index it.\n\n  Details.") == "Load the table."
    assert (
        first_sentence("Version 1.2 of the parser, no full stop") == "Version 1.2 of the parser, no full stop"
    )


def test_code_lines_are_distinctive_code_not_prose() -> None:
    assert is_code_line("adjusted_fn = dispatch_collection._adjust_fn_spec(fn, named)")
    assert is_code_line("    return carrier.strip(), tracking.strip(), address.strip()")
    for line in (
        "return x",  # too short
        "# carrier, tracking, address = raw_label.split('|', 2)",  # a comment
        "- `'forbid'`: Providing extra data is not permitted, and a [`ValidationError`] is raised",
        "the pool will emit a ping (typically a select one) before using any connection",  # prose
        "some_identifier_without_punctuation another_identifier third_one",
        "x" * 300,
    ):
        assert not is_code_line(line), line


def test_relevance_scores_and_drops() -> None:
    definition = KnownItem(NAME, "f", "a.py", 10, 19)
    # Relevant: in the file, overlapping by at least half of the shorter range.
    assert definition.relevant("a.py", 15, 16)  # inside
    assert definition.relevant("a.py", 1, 14)  # 5 of the definition's 10 lines
    assert not definition.relevant("a.py", 1, 13)  # 4 of 10
    assert not definition.relevant("b.py", 10, 19)
    assert not definition.relevant("a.py", 20, 30)
    line = KnownItem(LINE, "x = f(y)", "a.py", 7, 7)
    assert line.relevant("a.py", 1, 7) and not line.relevant("a.py", 8, 20)

    assert score([1, 2, None, 11]) == score([1, 2, None, None])
    s = score([1, 2, None, None])
    assert (s.queries, s.mrr_at_10, s.hit_at_1, s.hit_at_10) == (4, 0.375, 0.25, 0.5)
    assert score([]).queries == 0

    assert quality_drops({"mrr_at_10": 0.45, "hit_at_10": 0.9}, {"mrr_at_10": 0.5, "hit_at_10": 0.9}) == []
    drops = quality_drops({"mrr_at_10": 0.44, "hit_at_10": 0.5}, {"mrr_at_10": 0.5, "hit_at_10": 0.9})
    assert drops == ["mrr_at_10 0.500 -> 0.440 (-12%)", "hit_at_10 0.900 -> 0.500 (-44%)"]
    assert quality_drops({"mrr_at_10": 0.0}, {"mrr_at_10": 0.0}) == []
    assert quality_drops({"mrr_at_10": 0.9}, {}) == []  # nothing to compare with


# -- on a real database ---------------------------------------------------------------------------------------------
async def ingested(
    db: Database, database: ConnectTarget, tmp_path: Path, stub: OllamaStub
) -> tuple[Path, Settings]:
    repo = make_repo(tmp_path / "shop", files())
    settings = ingest_settings(database, tmp_path / "home", stub.url)
    await ingest_repository(db, settings, repo, name="shop")
    return repo, settings


async def test_sampling_is_deterministic_and_picks_each_kind(
    db: Database, database: ConnectTarget, tmp_path: Path, stub: OllamaStub
) -> None:
    repo, _ = await ingested(db, database, tmp_path, stub)
    async with db.connection() as conn:
        items = await sample_known_items(conn, "shop", 30, seed=0)
        assert items == await sample_known_items(conn, "shop", 30, seed=0)
        other = await sample_known_items(conn, "shop", 30, seed=1)
        symbols = await conn.fetch("SELECT name, qualified_name FROM mahavishnu.symbols")
    # Another seed: another order (all the few names and docstrings are taken either way), other lines.
    assert other != items
    for kind in (NAME, DOCSTRING):
        assert sorted(repr(i) for i in other if i.kind == kind) == sorted(
            repr(i) for i in items if i.kind == kind
        )
    by_kind = {kind: [i for i in items if i.kind == kind] for kind in KINDS}
    assert all(len(found) <= 10 for found in by_kind.values())
    # Names: each defined once, its lines those of its definition.
    names = [s["name"] for s in symbols]
    assert {i.query for i in by_kind[NAME]} == {
        "rebuild_inventory_report",
        "ShoppingCart",
        "add_product",
        "checkout_total",
        "parse_shipping_label",
        "ApplySeasonalDiscount",
        "RoundToCents",
    }
    assert all(names.count(i.query) == 1 for i in by_kind[NAME])
    cart = next(i for i in by_kind[NAME] if i.query == "ShoppingCart")
    class_line = INVENTORY_PY.split("\n").index("class ShoppingCart:") + 1
    assert (cart.path, cart.start_line, cart.end_line) == ("shop/inventory.py", class_line, class_line + 9)
    # Lines: code, at the line they name in the file on disk, never prose, never from the README.
    assert len(by_kind[LINE]) == 10
    for item in by_kind[LINE]:
        assert item.path != "README.md"
        on_disk = (repo / item.path).read_text().split("\n")[item.start_line - 1]
        assert on_disk.strip() == item.query
    # Docstrings: the two functions split over several chunks, each without the chunk holding its sentence.
    docs = {i.query: i for i in by_kind[DOCSTRING]}
    assert set(docs) == {
        "Rebuild the quarterly inventory report from scratch for every warehouse region.",
        "ApplySeasonalDiscount lowers the order price during the winter clearance sale.",
    }
    async with db.connection() as conn:
        for item in docs.values():
            assert len(item.exclude_chunk_ids) == 1
            own = await conn.fetchrow(
                "SELECT path, content FROM mahavishnu.chunks WHERE id = $1", item.exclude_chunk_ids[0]
            )
            assert own["path"] == item.path
            assert item.query.split()[0] in own["content"]  # the sentence's chunk is the one left out


async def test_the_docstring_query_excludes_its_own_chunk(
    db: Database, database: ConnectTarget, tmp_path: Path, stub: OllamaStub
) -> None:
    _, settings = await ingested(db, database, tmp_path, stub)
    async with db.connection() as conn:
        items = await sample_known_items(conn, "shop", 30)
    item = next(i for i in items if i.kind == DOCSTRING and i.path.endswith(".py"))
    own = item.exclude_chunk_ids[0]
    for mode in ("text", "vector", "hybrid"):
        plain = await search_text(
            db, settings, item.query, mode=mode, k=10, filters=SearchFilters(repo="shop")
        )
        # Searched as is, the sentence finds the chunk holding it first (in text mode): the exclusion matters.
        if mode == "text":
            assert plain["results"][0]["chunk_id"] == own
        assert own in [h["chunk_id"] for h in plain["results"]]
        excluded = await search_text(
            db,
            settings,
            item.query,
            mode=mode,
            k=10,
            filters=SearchFilters(repo="shop", exclude_chunk_ids=item.exclude_chunk_ids),
        )
        assert own not in [h["chunk_id"] for h in excluded["results"]]
        assert excluded["results"]  # the rest of the repository is still searched
    # Symbol mode drops the excluded chunk after the lookup.
    found = await search_text(db, settings, "rebuild_inventory_report", mode="symbol", k=5)
    chunk = found["results"][0]["chunk_id"]
    gone = await search_text(
        db,
        settings,
        "rebuild_inventory_report",
        mode="symbol",
        k=5,
        filters=SearchFilters(exclude_chunk_ids=(chunk,)),
    )
    assert gone["results"] == []
    with pytest.raises(SearchError):
        SearchFilters(exclude_chunk_ids=("1; DROP TABLE x",)).validated()  # type: ignore[arg-type]


async def test_measure_quality_gives_sensible_figures_and_logs_no_query(
    db: Database, database: ConnectTarget, tmp_path: Path, stub: OllamaStub
) -> None:
    _, settings = await ingested(db, database, tmp_path, stub)
    report = await measure_quality(db, settings, "shop", count=30)
    figures = report.figures()
    assert (
        figures["queries"] == figures["name/queries"] + figures["line/queries"] + figures["docstring/queries"]
    )
    assert (figures["name/queries"], figures["line/queries"], figures["docstring/queries"]) == (7, 10, 2)
    # A definition is found by its name, a line by itself: first or nearly.
    assert figures["name/mrr_at_10"] >= 0.9 and figures["name/hit_at_10"] == 1.0
    assert figures["line/hit_at_10"] == 1.0
    for key, value in figures.items():
        if not key.endswith("queries"):
            assert 0.0 <= value <= 1.0, key
    worst = report.to_dict()["worst"]
    assert len(worst) == 5
    assert [w["rank"] or 11 for w in worst] == sorted((w["rank"] or 11 for w in worst), reverse=True)
    # The same data, the same figures; the sampled queries never reach the ANN tuner's query log.
    again = await measure_quality(db, settings, "shop", count=30)
    assert again.figures() == figures
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM mahavishnu.query_log") == 0

    # Text mode needs no embedder; an unknown repository is a clear error.
    text = await measure_quality(db, settings, "shop", count=30, mode="text")
    assert text.scores().queries == report.scores().queries
    with pytest.raises(SearchError, match="No repository named"):
        await measure_quality(db, settings, "nope")
