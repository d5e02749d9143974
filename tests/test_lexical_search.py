"""Text search ranks by BM25: rare words outweigh common ones, long chunks are normalized, identifiers hold."""

from __future__ import annotations

import pytest

from mahavishnu_assets.database.pool import Database
from mahavishnu_assets.errors import SearchError
from mahavishnu_assets.index.synthetic import add_chunks, content_hash
from mahavishnu_assets.search import sql
from mahavishnu_assets.search.core import search
from mahavishnu_assets.search.filters import SearchFilters

FILLER = "alpha beta gamma delta epsilon zeta theta iota kappa lambda".split()


async def load(db: Database, repo: str, texts: dict[str, str]) -> None:
    async with db.connection() as conn:
        for i, (path, text) in enumerate(texts.items()):
            await add_chunks(conn, repo, path, [(text, content_hash(i, f"{repo}/{path}".encode()))])


def filler(n: int, *extra: str) -> dict[str, str]:
    """n ordinary chunks, each with three filler words and the extra words."""
    return {
        f"fill/f{i}.txt": " ".join([*(FILLER[(i + j) % len(FILLER)] for j in range(3)), *extra])
        for i in range(n)
    }


async def paths(db: Database, query: str, k: int = 10, **filters: str) -> list[str]:
    result = await search(db, mode="text", text=query, k=k, filters=SearchFilters(**filters))
    return [h.path for h in result.results]


async def test_a_rare_word_outranks_a_common_word_repeated(db: Database) -> None:
    # `widget` is in forty chunks; `frobnicate` in one. ts_rank, without document frequencies, put the chunk
    # repeating the common word first.
    await load(
        db,
        "r",
        {
            "a/common.txt": "widget " * 12,
            "b/rare.txt": "frobnicate alpha",
            **filler(40, "widget"),
        },
    )
    got = await paths(db, "frobnicate widget")
    assert got[0] == "b/rare.txt"
    assert got[1] == "a/common.txt"


async def test_the_same_word_counts_more_in_a_short_chunk(db: Database) -> None:
    # One occurrence each; the long chunk also holds forty other words (and would win the path tie order).
    long_text = "zymurgy " + " ".join(f"word{i}x" for i in range(40))
    await load(db, "r", {"a/long.txt": long_text, "b/short.txt": "zymurgy brewing", **filler(20)})
    assert await paths(db, "zymurgy") == ["b/short.txt", "a/long.txt"]


async def test_more_occurrences_count_more_but_saturate(db: Database) -> None:
    await load(
        db,
        "r",
        {
            "a/once.txt": "quokka " + "alpha " * 5,
            "b/thrice.txt": "quokka quokka quokka alpha alpha",
            **filler(10),
        },
    )
    result = await search(db, mode="text", text="quokka", k=5)
    scores = {h.path: h.score for h in result.results}
    assert [h.path for h in result.results] == ["b/thrice.txt", "a/once.txt"]
    assert scores["b/thrice.txt"] < 3 * scores["a/once.txt"]


async def test_a_word_in_the_path_counts_more_than_in_the_content(db: Database) -> None:
    await load(
        db, "r", {"a/notes.txt": "pangolin alpha beta", "z/pangolin.txt": "other alpha beta", **filler(10)}
    )
    assert (await paths(db, "pangolin"))[0] == "z/pangolin.txt"


@pytest.mark.parametrize(
    ("query", "path"),
    [
        ("get_random_secret_key", "core/utils.py"),
        ("QuerySet.filter", "db/query.py"),
        ("HTTPServer", "net/server.py"),
    ],
)
async def test_an_identifier_finds_the_chunk_holding_it_before_its_scattered_words(
    db: Database, query: str, path: str
) -> None:
    texts = {
        "core/utils.py": "def get_random_secret_key():\n    return token()\n",
        "db/query.py": "class QuerySet:\n    pass\n\nQuerySet.filter(name='x')\n",
        "net/server.py": "class HTTPServer(BaseServer):\n    pass\n",
        # Each query's words, apart and more often.
        "docs/a.txt": "get the key; a random key; the secret key; get a random secret; get key",
        "docs/b.txt": "query the set, set a filter, filter the query set, query filter set",
        "docs/c.txt": "a server answers http requests; the server speaks http, and logs of the server mention http",
        **filler(30, "key"),
    }
    await load(db, "r", texts)
    got = await paths(db, query)
    assert got[0] == path


async def test_a_repository_filter_ranks_with_that_repository_statistics(db: Database) -> None:
    # In `small`, `okapi` is rare; in `big` it is everywhere. Filtered to `small`, scores do not depend on
    # `big` at all; unfiltered, the shared statistics lower the word's weight.
    await load(db, "small", {"x.txt": "okapi zebra", "y.txt": "zebra stripes", **filler(8)})
    alone = await search(db, mode="text", text="okapi zebra", k=5, filters=SearchFilters(repo="small"))
    await load(db, "big", {f"b{i}.txt": "okapi" for i in range(50)})
    filtered = await search(db, mode="text", text="okapi zebra", k=5, filters=SearchFilters(repo="small"))
    assert [(h.path, h.score) for h in filtered.results] == [(h.path, h.score) for h in alone.results]
    everywhere = await search(db, mode="text", text="okapi zebra", k=100)
    global_x = next(h.score for h in everywhere.results if h.repo == "small" and h.path == "x.txt")
    assert global_x < filtered.results[0].score
    assert {h.repo for h in everywhere.results} == {"small", "big"}


async def test_very_common_words_still_score_when_left_out_of_matching(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `kudu` is in twelve chunks, `gnu` in fifty. With a tiny match budget only `kudu` selects candidates (the
    # floor is ten per result asked for, and twelve chunks hold it), yet `gnu` still adds to their scores.
    texts = {f"k/k{i:02}.txt": "kudu alpha" for i in range(11)}
    texts["k/zz.txt"] = "kudu gnu"
    texts.update({f"g/g{i:02}.txt": "gnu gnu gnu" for i in range(50)})
    await load(db, "r", texts)
    exhaustive = await paths(db, "kudu gnu", k=1)
    monkeypatch.setattr(sql, "MATCH_BUDGET", 1)
    # Without `gnu` in its score, k/zz.txt would tie with the other `kudu` chunks and come last by path.
    assert exhaustive == await paths(db, "kudu gnu", k=1) == ["k/zz.txt"]


async def test_empty_stop_word_and_sql_like_queries_are_safe(db: Database) -> None:
    await load(db, "r", {"a.sql": "DROP TABLE users; SELECT * FROM t WHERE x = 'y'", **filler(5)})
    async with db.connection() as conn:
        before = await conn.fetch("SELECT * FROM mahavishnu.lexical_terms ORDER BY 1, 2")
    for nothing in ("", "the of and", "&&& | !", "'", "\\"):
        assert await paths(db, nothing) == []
    for hostile in (
        "'; DROP TABLE mahavishnu.lexical_terms; --",
        "users' OR '1'='1",
        "a:* & !b <-> (c | d)",
        "it''s \\' \\\\ back\\slash",
        "x" * 5000,
    ):
        await paths(db, hostile)  # no error
    assert (await paths(db, "DROP TABLE users"))[0] == "a.sql"
    with pytest.raises(SearchError, match="characters"):
        await paths(db, "many words " * 20_000)
    async with db.connection() as conn:
        assert await conn.fetch("SELECT * FROM mahavishnu.lexical_terms ORDER BY 1, 2") == before


async def test_the_words_of_the_enclosing_definition_count_more_than_a_call(db: Database) -> None:
    """A question about a function meets the chunk it is defined in (its name's words are search terms of
    weight B, migration 0044) before a chunk that only calls it, even a chunk calling it twice."""
    await load(
        db,
        "r",
        {
            "core/secret.py": "def get_random_secret_key():\n    return token_hex(32)",
            "app/settings.py": "key = get_random_secret_key()\nfallback = get_random_secret_key()",
            **filler(10),
        },
    )
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE mahavishnu.chunks SET symbol = 'get_random_secret_key' WHERE path = 'core/secret.py'"
        )
        terms = await conn.fetchval(
            "SELECT search_terms FROM mahavishnu.chunks WHERE path = 'core/secret.py'"
        )
    assert "'secret':" in terms and "B" in terms
    assert (await paths(db, "return a random secret key"))[0] == "core/secret.py"


async def test_a_chunk_defining_small_methods_is_found_by_their_names(db: Database) -> None:
    """A chunk merging small methods is where each is defined, though its own symbol names only the class:
    the names of the definitions beginning in it are search terms of weight B (migration 0045), so a question
    about one of them meets it before a chunk that calls that method twice."""
    await load(
        db,
        "r",
        {
            "ui/console.py": "class Console:\n    def encoding(self):\n        return self.file.enc\n"
            "    def color_system(self):\n        return self._system\n    def width(self):\n        return 80",
            "app/render.py": "mode = console.color_system()\nif console.color_system() == 'truecolor':\n"
            "    depth = 24",
            **filler(10),
        },
    )
    query = "get the color system"
    assert (await paths(db, query))[0] == "app/render.py"  # by content words alone
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE mahavishnu.chunks SET symbol = 'Console', names = 'Console encoding color_system width' "
            "WHERE path = 'ui/console.py'"
        )
    assert (await paths(db, query))[0] == "ui/console.py"
