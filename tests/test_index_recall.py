"""Honest ANN recall: the tuner measures on query texts embedded through the embedder (and on the queries users
ran), and its figure agrees with held-out queries on real code with a real model."""

from __future__ import annotations

import shutil
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from mahavishnu_assets.database.pool import Database
from mahavishnu_assets.database.target import ConnectTarget
from mahavishnu_assets.errors import AnnIndexError
from mahavishnu_assets.index import measure
from mahavishnu_assets.index.maintenance import refresh_space
from mahavishnu_assets.index.queries import (
    comment_sentences,
    derive_query,
    heldout_texts,
    identifiers,
    is_trivial,
    longest_line,
    recall_queries,
    tuning_texts,
)
from mahavishnu_assets.index.query_log import logged_queries, record_query
from mahavishnu_assets.index.registry import Space, live_indexes, spaces
from mahavishnu_assets.index.synthetic import add_chunks, clustered_embeddings, content_hash, create_space
from mahavishnu_assets.index.synthetic import load_vectors as load_space_vectors
from mahavishnu_assets.ingest.local_embed import WordLlamaEmbedder
from mahavishnu_assets.ingest.pipeline import ingest_repository
from mahavishnu_assets.search.service import search_text
from mahavishnu_assets.settings import Settings
from mahavishnu_assets.testing.ollama_stub import OllamaStub

# Real code: packages of the standard library this interpreter runs on (about 1,600 chunks: enough rows for an
# IVFFlat index whose probes really skip lists).
STDLIB_PACKAGES = (
    "json",
    "email",
    "http",
    "logging",
    "asyncio",
    "xml",
    "unittest",
    "multiprocessing",
    "concurrent",
    "importlib",
)
USER_QUERIES = [
    f"{verb} {thing}"
    for verb in ("parse", "encode", "decode", "send", "close", "read")
    for thing in ("an email header", "a json document", "the http response", "a log record", "xml attributes")
]

SOURCE = '''"""Tools for frobnicating widgets. They keep the cache warm."""

import os


def frobnicate_widget(widget, level=3):
    # Turn the widget until it clicks, then report how far it went.
    try:
        return widget.turn(level)
    except ValueError:
        pass
'''


def copy_packages(root: Path, names: tuple[str, ...]) -> Path:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for name in names:
        shutil.copytree(stdlib / name, root / name, ignore=shutil.ignore_patterns("test*", "__pycache__"))
    return root


def recall_settings(test_settings: Settings, **index: object) -> Settings:
    values: dict[str, object] = {
        "min_rows_for_index": 500,
        "lists_rule": "sqrt",  # ~45 lists over ~2,000 rows: an index that is really approximate
        "recall_sample_queries": 200,
    }
    values.update(index)
    return test_settings.model_copy(update={"index": test_settings.index.model_copy(update=values)})


async def only_space(db: Database) -> Space:
    async with db.connection() as conn:
        (space,) = [s for s in await spaces(conn) if s.rows > 0]
    return space


# -- query texts --------------------------------------------------------------------------------------------


def test_trivial_lines_are_not_queries() -> None:
    for line in ("try:", "    }", "else:", "return None", "pass", ") -> None:", "# ---------------", ""):
        assert is_trivial(line), line
    for line in ("return widget.turn(level)", "def frobnicate_widget(widget, level=3):", "import os.path"):
        assert not is_trivial(line), line


def test_comment_sentences_identifiers_and_longest_line() -> None:
    sentences = comment_sentences(SOURCE)
    assert "Tools for frobnicating widgets." in sentences
    assert "Turn the widget until it clicks, then report how far it went." in sentences
    assert identifiers(SOURCE) == ["frobnicate_widget"]
    assert identifiers("x = compute_total(a) + helper()") == ["compute_total", "helper"]
    assert longest_line(SOURCE) == "# Turn the widget until it clicks, then report how far it went."
    assert longest_line("    try:\n        return widget.turn(level)\n    except ValueError:\n") == (
        "return widget.turn(level)"
    )
    assert longest_line("try:\n    pass\n}\n") is None


def test_derived_queries_are_deterministic_and_cover_every_kind() -> None:
    def draw(seed: int) -> list[tuple[str, str] | None]:
        rng = np.random.default_rng(seed)
        return [derive_query(SOURCE, rng) for _ in range(60)]

    assert draw(7) == draw(7) and draw(7) != draw(8)
    kinds = {found[0] for found in draw(7) if found}
    assert kinds == {"line", "comment", "identifier"}
    for found in draw(7):
        assert found is not None
        if found[0] != "comment":  # comment sentences are joined across lines; the others are verbatim
            assert found[1] in SOURCE


def test_a_row_tied_with_the_last_true_neighbour_counts_as_found() -> None:
    truth = [measure.Neighbours([b"a", b"b", b"c"], [0.1, 0.2, 0.5])]
    tied = [measure.Neighbours([b"a", b"b", b"z"], [0.1, 0.2, 0.5])]  # z is as close as c: equally right
    farther = [measure.Neighbours([b"a", b"b", b"z"], [0.1, 0.2, 0.5001])]
    assert measure.recall(truth, tied) == 1.0
    assert measure.recall(truth, farther) == round(2 / 3, 4)
    assert measure.recall(truth, [measure.Neighbours([b"c", b"b", b"a"], [0.5, 0.2, 0.1])]) == 1.0


# -- the query log ------------------------------------------------------------------------------------------


async def test_query_log_is_bounded_per_space_and_can_be_disabled(
    db: Database, test_settings: Settings
) -> None:
    async with db.connection() as conn:
        one = await create_space(conn, 8, provider="a")
        two = await create_space(conn, 8, provider="b")
    settings = recall_settings(test_settings, query_log_size=5)
    for i in range(8):
        assert await record_query(db, settings, one, "hybrid", f"query number {i}")
    assert await record_query(db, settings, two, "vector", "  the  other   space ")
    assert not await record_query(db, settings, one, "text", "text mode has no vector to tune for")
    assert not await record_query(db, settings, None, "hybrid", "no space")
    off = recall_settings(test_settings, query_log=False)
    assert not await record_query(db, off, one, "hybrid", "never kept")
    async with db.connection() as conn:
        assert await logged_queries(conn, one, 100) == [f"query number {i}" for i in (7, 6, 5, 4, 3)]
        assert await logged_queries(conn, two, 100) == ["the other space"]
        assert await conn.fetchval("SELECT count(*) FROM mahavishnu.query_log") == 6


async def test_search_logs_its_query_and_never_fails_for_the_log(
    db: Database, test_settings: Settings, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    (repo / "pkg").mkdir(parents=True)
    (repo / "pkg" / "widgets.py").write_text(SOURCE)
    await ingest_repository(db, test_settings, repo, name="widgets")
    await search_text(db, test_settings, "frobnicate a widget", mode="hybrid")
    await search_text(db, test_settings, "widget turn", mode="vector")
    await search_text(db, test_settings, "only words", mode="text")
    off = test_settings.model_copy(
        update={"index": test_settings.index.model_copy(update={"query_log": False})}
    )
    await search_text(db, off, "kept nowhere", mode="hybrid")
    async with db.connection() as conn:
        rows = await conn.fetch("SELECT mode, query FROM mahavishnu.query_log ORDER BY id")
        assert [(r["mode"], r["query"]) for r in rows] == [
            ("hybrid", "frobnicate a widget"),
            ("vector", "widget turn"),
        ]
        await conn.execute("DROP TABLE mahavishnu.query_log")
    found = await search_text(db, test_settings, "frobnicate a widget", mode="hybrid")
    assert found["results"] and found["results"][0]["path"] == "pkg/widgets.py"


# -- recall on real code with a real model ------------------------------------------------------------------


async def test_reported_recall_agrees_with_held_out_queries_on_real_code(
    db: Database, test_settings: Settings, tmp_path: Path
) -> None:
    embedder = WordLlamaEmbedder()
    settings = recall_settings(test_settings)
    corpus = copy_packages(tmp_path / "corpus", STDLIB_PACKAGES)
    await ingest_repository(db, settings, corpus, name="stdlib", embedder=embedder)
    for query in USER_QUERIES:
        await search_text(db, settings, query, mode="hybrid", embedder=embedder)
    space = await only_space(db)
    assert space.rows >= 1500

    report = await refresh_space(db, settings, space, embedder=embedder)

    assert report["method"] == "ivfflat" and report["built"] and report["recall_queries"] == "text"
    async with db.connection() as conn:
        assert await measure.uses_index(conn, space.id, space.dimensions, report["index"])
    lists = report["params"]["lists"]
    probes = report["search_params"]["ivfflat.probes"]
    tried = {t["value"]: t["recall"] for t in report["tried"]}
    assert probes < lists and min(tried.values()) < 0.95  # approximate: fewer probes miss the target
    assert report["recall_at_10"] >= 0.95 and report["heldout_recall_at_10"] >= 0.95
    assert abs(report["recall_at_10"] - report["heldout_recall_at_10"]) <= 0.03
    kinds = report["query_kinds"]
    assert {"line", "comment", "identifier", "log"} <= set(kinds["tune"])
    assert 0 < kinds["tune"]["log"] <= len(USER_QUERIES) and kinds["heldout"].get("log", 0) > 0
    assert sum(kinds["tune"].values()) == sum(kinds["heldout"].values()) == report["heldout_queries"] == 200

    # The old sample (stored vectors plus noise) fails this very check: it flatters the index.
    async with db.connection() as conn:
        sample = await recall_queries(conn, space, 200, embedder)
        stored = await measure.measure(
            conn,
            space.id,
            space.dimensions,
            "ivfflat",
            report["params"],
            target=0.95,
            sample=200,
            heldout=sample.heldout,
        )
    assert stored.recall_at_10 is not None and stored.heldout_recall_at_10 is not None
    assert stored.recall_at_10 - stored.heldout_recall_at_10 > 0.03


async def test_tuning_and_held_out_samples_are_disjoint_and_repeatable(
    db: Database, test_settings: Settings, tmp_path: Path
) -> None:
    corpus = copy_packages(tmp_path / "corpus", ("json", "email"))
    await ingest_repository(db, test_settings, corpus, name="stdlib")
    space = await only_space(db)
    async with db.connection() as conn:
        first = await tuning_texts(conn, space.id, 60)
        again = await tuning_texts(conn, space.id, 60)
        held = await heldout_texts(conn, space.id, 60, exclude=sorted(first.chunks))
    assert first.texts == again.texts and len(first) == 60
    assert first.chunks.isdisjoint(held.chunks) and len(held) == 60
    assert set(held.kinds) == {"longest_line"}
    assert all(0 < len(t) <= 200 for t in first.texts + held.texts)


def test_index_command_reports_both_recalls(
    database: ConnectTarget,
    settings_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import json

    from mahavishnu_assets.cli import main

    monkeypatch.setenv("MAHAVISHNU_DATABASE_URL", database.libpq_url().get_secret_value())
    monkeypatch.setenv("MAHAVISHNU_EMBEDDER", "local")
    monkeypatch.setenv("MAHAVISHNU_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MAHAVISHNU_INDEX__MIN_ROWS_FOR_INDEX", "100")
    monkeypatch.setenv("MAHAVISHNU_INDEX__RECALL_SAMPLE_QUERIES", "50")
    corpus = copy_packages(tmp_path / "corpus", ("json", "email"))

    def run(*argv: str) -> dict:
        assert main([*argv, "--json"]) == 0
        return json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    run("ingest", str(corpus), "--name", "stdlib")
    run("search", "parse an email address", "--mode", "hybrid")
    out = run("index")
    for key in ("method", "params", "rows", "recall_at_10", "build_seconds", "search_params"):
        assert key in out
    assert out["method"] == "ivfflat" and out["recall_queries"] == "text"
    assert 0 < out["heldout_recall_at_10"] <= 1 and out["heldout_queries"] == 50
    # The one logged query is in the tuner's half of the log or the held-out half.
    assert sum(out["query_kinds"][side].get("log", 0) for side in ("tune", "heldout")) == 1


# -- which embedder, and without one ------------------------------------------------------------------------


async def make_ollama_space(db: Database, rows: int = 300, dims: int = 16) -> Space:
    """A space that an Ollama model made, with chunks of real-looking code for its vectors."""
    async with db.connection() as conn:
        space_id = await create_space(
            conn, dims, provider="ollama", model="all-minilm"
        )  # a model without prefixes
        hashes = [content_hash(i, b"ollama") for i in range(rows)]
        await load_space_vectors(conn, space_id, clustered_embeddings(rows, dims), hashes)
        chunks = [
            (f"def handler_{i}(request):\n    return render_page(request, number={i})\n", hashes[i])
            for i in range(rows)
        ]
        await add_chunks(conn, "app", "app/views.py", chunks)
        await conn.execute("ANALYZE mahavishnu.embeddings")
    return next(s for s in await _spaces(db) if s.id == space_id)


async def _spaces(db: Database) -> list[Space]:
    async with db.connection() as conn:
        return await spaces(conn)


async def test_the_settings_embedder_makes_the_queries_through_the_ollama_protocol(
    db: Database, test_settings: Settings
) -> None:
    space = await make_ollama_space(db)
    with OllamaStub(dimensions=16) as stub:
        settings = recall_settings(
            test_settings, min_rows_for_index=100, recall_sample_queries=40
        ).model_copy(
            update={
                "embedder": "ollama",
                "embed_model": "all-minilm",
                "ollama": test_settings.ollama.model_copy(update={"host": stub.url}),
            }
        )
        report = await refresh_space(db, settings, space)
        embedded = stub.stats.texts
    assert report["recall_queries"] == "text" and report["notices"] == []
    assert report["heldout_recall_at_10"] is not None and report["heldout_queries"] == 40
    assert embedded == 80  # the tuner's 40 texts and the 40 held-out ones, in one pass


async def test_unreachable_embedder_fails_before_building_or_falls_back_loudly(
    db: Database, test_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    space = await make_ollama_space(db)
    dead = test_settings.ollama.model_copy(
        update={"host": "http://127.0.0.1:9", "max_retries": 0, "timeout_seconds": 2.0}
    )
    required = recall_settings(test_settings, min_rows_for_index=100).model_copy(
        update={"embedder": "ollama", "embed_model": "all-minilm", "ollama": dead}
    )
    with pytest.raises(AnnIndexError) as failed:
        await refresh_space(db, required, space)
    assert "could not be embedded" in failed.value.message and "Ollama" in failed.value.suggestion
    async with db.connection() as conn:
        assert await live_indexes(conn) == []  # failed before the build, nothing half-done

    auto = required.model_copy(update={"embedder": "auto"})
    report = await refresh_space(db, auto, space)
    assert report["built"] and report["recall_queries"] == "stored_vectors"
    assert report["heldout_recall_at_10"] is None
    assert report["notices"] and "not reachable" in report["notices"][0]
    assert "flatters" in caplog.text
