"""The identifier splitting behind full-text search (migration 0033): its words, and that one pass gives the text
the four passes of 0021 gave, so terms stored before the migration stay valid."""

from __future__ import annotations

import random
from pathlib import Path

from mahavishnu_assets.database.pool import Database

FOUR_PASSES = (Path(__file__).parents[1] / "migrations" / "0033_code_words_one_pass.down.sql").read_text()


async def test_identifiers_split_into_their_words(db: Database) -> None:
    async with db.connection() as conn:
        words = await conn.fetchval(
            "SELECT mahavishnu.code_words($1)",
            "getUserName HTTPServer base64Encode x1y2 self._cache.get src/auth-login.py a@b:c ABCDef é1Ü",
        )
    assert words == (
        "get User Name HTTP Server base 64 Encode x 1 y 2 self _cache get src auth login py a b c ABC Def é1Ü"
    )


async def test_one_pass_gives_the_text_of_the_four_passes(db: Database) -> None:
    alphabet = "aZbY09._/-@: \nAé"
    rng = random.Random(7)
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) for _ in range(3000)]
    texts += ["aBCDe", "ABCd", "a1B", "1a1", "aBcD", "HTTPServer2Go", "x9Y", "ZZz9zZ"]
    async with db.connection() as conn:
        async with conn.transaction():
            # The old function beside the new one, for this transaction only.
            await conn.execute("CREATE SCHEMA old_words")
            await conn.execute(FOUR_PASSES.replace("mahavishnu.code_words", "old_words.code_words"))
            differ = await conn.fetch(
                """SELECT t FROM unnest($1::text[]) AS t
                   WHERE mahavishnu.code_words(t) IS DISTINCT FROM old_words.code_words(t)""",
                texts,
            )
            await conn.execute("DROP SCHEMA old_words CASCADE")
    assert [r["t"] for r in differ] == []
