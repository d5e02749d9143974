"""Real index builds at small scale: choice, recall against exact, tuning, drift, and no INVALID leftovers."""

from __future__ import annotations

import asyncio

import asyncpg
import numpy as np
import pytest

from mahavishnu_assets.database.pool import Database, connect
from mahavishnu_assets.errors import AnnIndexError
from mahavishnu_assets.index import measure as measure_module
from mahavishnu_assets.index.build import drop_invalid_everywhere
from mahavishnu_assets.index.maintenance import (
    index_status,
    rebuild_drifted_indexes,
    refresh_space,
    status_extension,
)
from mahavishnu_assets.index.plan import choose_plan
from mahavishnu_assets.index.registry import Space, live_indexes, spaces
from mahavishnu_assets.index.synthetic import (
    clustered_embeddings,
    content_hash,
    create_space,
    load_vectors,
    synthetic_corpus,
)
from mahavishnu_assets.settings import Settings

DIMS = 64


def small_settings(**index: object) -> Settings:
    values: dict[str, object] = {
        "min_rows_for_index": 1000,
        "recall_sample_queries": 25,
        "hnsw_threshold_rows": 10**6,
    }
    values.update(index)
    return Settings(index=values)


async def make_space(db: Database, count: int, *, provider: str = "synthetic", dims: int = DIMS) -> Space:
    async with db.connection() as conn:
        space_id = await create_space(conn, dims, provider=provider)
        vectors = clustered_embeddings(count, dims, seed=count)
        await load_vectors(
            conn, space_id, vectors, [content_hash(i, provider.encode()) for i in range(count)]
        )
        await conn.execute("ANALYZE mahavishnu.embeddings")
        return next(s for s in await spaces(conn) if s.id == space_id)


async def invalid_ann_indexes(db: Database) -> list[str]:
    async with db.connection() as conn:
        return [i.name for i in await live_indexes(conn) if not i.valid]


async def test_ivfflat_build_measures_recall_against_exact_and_tunes_probes(db: Database) -> None:
    space = await make_space(db, 3000)
    report = await refresh_space(db, small_settings(), space)
    assert report["method"] == "ivfflat" and report["built"]
    assert report["params"] == {"lists": 3} and report["lists_rule"] == "rows/1000"
    assert report["recall_at_10"] >= 0.95
    probes = report["search_params"]["ivfflat.probes"]
    # Tuned = the smallest tried value that reaches the target with 95% confidence.
    tried = {t["value"]: t for t in report["tried"]}
    assert (
        tried[probes]["recall"] >= tried[probes]["recall_lower_bound"] >= 0.95
        or tried[probes]["recall"] == 1.0
    )
    assert all(t["recall_lower_bound"] < 0.95 for v, t in tried.items() if v < probes)
    for key in ("exact_p50_ms", "exact_p99_ms", "exact_qps", "ann_p50_ms", "ann_p99_ms", "ann_qps"):
        assert report[key] > 0
    assert report["maintenance_work_mem"].endswith("MB")
    # Running it again keeps the index (nothing drifted) and re-measures.
    again = await refresh_space(db, small_settings(), space)
    assert not again["built"] and again["index"] == report["index"]


async def test_hnsw_tuning_reaches_a_high_target(db: Database) -> None:
    space = await make_space(db, 2000)
    report = await refresh_space(db, small_settings(method="hnsw", target_recall=0.99), space)
    assert report["method"] == "hnsw" and report["params"] == {"m": 16, "ef_construction": 64}
    assert report["recall_at_10"] >= 0.99
    ef = report["search_params"]["hnsw.ef_search"]
    tried = {t["value"]: t for t in report["tried"]}
    assert all(t["recall_lower_bound"] < 0.99 and t["recall"] < 1.0 for v, t in tried.items() if v < ef)


async def test_recall_is_computed_against_exact_search(db: Database) -> None:
    space = await make_space(db, 2000)
    await refresh_space(db, small_settings(), space)
    async with db.connection() as conn:
        queries = await measure_module.sample_queries(conn, space.id, 10)
        truth, _ = await measure_module.exact_topk(conn, space.id, DIMS, queries)
        one_probe, _ = await measure_module.ann_topk(conn, space.id, DIMS, "ivfflat", 1, queries)
        all_probes, _ = await measure_module.ann_topk(conn, space.id, DIMS, "ivfflat", 2, queries)
    # numpy's answer is the ground truth of the ground truth.
    async with db.connection() as conn:
        rows = await conn.fetch(
            "SELECT content_hash, embedding FROM mahavishnu.embeddings WHERE space_id = $1", space.id
        )
    hashes = [r[0] for r in rows]
    matrix = np.stack([r[1].to_numpy() for r in rows])
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    for q, want in zip(queries, truth, strict=True):
        best = np.argsort(-(matrix @ (q / np.linalg.norm(q))))[:10]
        assert {hashes[i] for i in best} == set(want.hashes)
    assert measure_module.recall(truth, all_probes) == 1.0  # probes = lists scans every list
    assert measure_module.recall(truth, one_probe) < 1.0


async def test_below_min_rows_search_is_exact_and_an_existing_index_is_dropped(db: Database) -> None:
    space = await make_space(db, 1500)
    built = await refresh_space(db, small_settings(), space)
    assert built["built"]
    report = await refresh_space(db, small_settings(min_rows_for_index=5000), space)
    assert report["method"] == "exact" and "min_rows_for_index" in report["reason"]
    assert report["recall_at_10"] == 1.0 and report["search_params"] == {}
    assert built["index"] in report["dropped"]
    async with db.connection() as conn:
        assert [i.name for i in await live_indexes(conn)] == []


async def test_drift_triggers_a_rebuild_and_the_old_index_goes(db: Database) -> None:
    space = await make_space(db, 1500)
    settings = small_settings()
    first = await refresh_space(db, settings, space)
    assert await rebuild_drifted_indexes(db, settings) == []  # nothing drifted
    async with db.connection() as conn:
        more = clustered_embeddings(1600, DIMS, seed=99)
        await load_vectors(conn, space.id, more, [content_hash(i, b"more") for i in range(1600)])
    done = await rebuild_drifted_indexes(db, settings)
    assert [d["action"] for d in done] == ["rebuilt"]
    assert "drifted" in done[0]["why"] and done[0]["rows"] == 3100
    assert done[0]["params"] == {"lists": 3}
    async with db.connection() as conn:
        names = [i.name for i in await live_indexes(conn)]
    assert names == [done[0]["index"]] and first["index"] not in names
    status = await index_status(db)
    assert status[0]["rows_at_build"] == 3100 and status[0]["valid"]


async def test_missing_index_is_built_by_maintenance_and_shown_in_status(db: Database) -> None:
    space = await make_space(db, 1200)
    settings = small_settings()
    done = await rebuild_drifted_indexes(db, settings)
    assert [(d["action"], d["space_id"]) for d in done] == [("rebuilt", space.id)]
    ext = await status_extension(settings, db)
    assert ext["indexes"][0]["method"] == "ivfflat" and ext["indexes"][0]["recall_at_10"] >= 0.95
    assert ext["invalid_ann_indexes"] == []


async def _cancel_when_building(db: Database, holder_pid_event: asyncio.Event, writer: tuple) -> None:
    async with db.connection() as conn:
        for _ in range(400):
            pid = await conn.fetchval(
                "SELECT pid FROM pg_stat_activity WHERE query LIKE 'CREATE INDEX CONCURRENTLY ann_%' "
                "AND state = 'active' AND datname = current_database()"
            )
            if pid and await conn.fetchval(
                "SELECT count(*) FROM pg_class WHERE relname LIKE 'ann\\_%' AND relkind = 'i'"
            ):
                assert await conn.fetchval("SELECT pg_cancel_backend($1)", pid)
                holder_pid_event.set()
                # The writer ends, as every transaction eventually does; the cleanup's DROP waits for it.
                await asyncio.sleep(0.2)
                await writer[1].rollback()
                return
            await asyncio.sleep(0.02)
    raise AssertionError("the build never started")


async def _hold_writer(db: Database) -> tuple[object, object]:
    """An open transaction that wrote to the table: CREATE INDEX CONCURRENTLY waits for it with its index
    already in the catalog, INVALID, which is exactly the state a cancellation must not leave behind."""
    conn = await connect(db.target)
    tx = conn.transaction()
    await tx.start()
    await conn.execute("UPDATE mahavishnu.embeddings SET created_at = created_at WHERE ctid = '(0,1)'")
    return conn, tx


async def test_cancelled_build_leaves_no_invalid_index(db: Database) -> None:
    space = await make_space(db, 1500)
    conn, tx = await _hold_writer(db)
    cancelled = asyncio.Event()
    try:
        canceller = asyncio.create_task(_cancel_when_building(db, cancelled, (conn, tx)))
        with pytest.raises(AnnIndexError, match="failed"):
            await refresh_space(db, small_settings(), space)
        await canceller
        assert cancelled.is_set()
    finally:
        await conn.close()  # type: ignore[attr-defined]
    assert await invalid_ann_indexes(db) == []
    async with db.connection() as c:
        assert await c.fetchval("SELECT count(*) FROM mahavishnu.vector_indexes") == 0
    # And the next build works.
    report = await refresh_space(db, small_settings(), space)
    assert report["built"]


async def test_task_cancelled_mid_build_leaves_no_invalid_index(db: Database) -> None:
    """Dagster stopping a run cancels the coroutine: the backend is cancelled and the index dropped."""
    space = await make_space(db, 1500)
    conn, tx = await _hold_writer(db)
    try:
        task = asyncio.create_task(refresh_space(db, small_settings(), space))
        async with db.connection() as c:
            for _ in range(400):
                if await c.fetchval(
                    "SELECT count(*) FROM pg_class WHERE relname LIKE 'ann\\_%' AND relkind = 'i'"
                ):
                    break
                await asyncio.sleep(0.02)
        task.cancel()
        await asyncio.sleep(0.2)
        await tx.rollback()  # type: ignore[attr-defined]
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        await conn.close()  # type: ignore[attr-defined]
    assert await invalid_ann_indexes(db) == []


async def test_leftover_invalid_index_of_a_killed_build_is_dropped(db: Database) -> None:
    space = await make_space(db, 1500)
    # What a SIGKILLed build leaves: an INVALID ann_ index in the catalog.
    conn, tx = await _hold_writer(db)
    builder = await connect(db.target)
    try:
        plan = choose_plan(1500, DIMS, small_settings().index)
        from mahavishnu_assets.index.plan import create_index_sql, index_name

        build = asyncio.create_task(
            builder.execute(create_index_sql(plan, space.id, index_name(space.id, 7, "ivfflat")))
        )
        await asyncio.sleep(0.5)
        pid = await conn.fetchval(
            "SELECT pid FROM pg_stat_activity WHERE query LIKE 'CREATE INDEX CONCURRENTLY%'"
        )
        async with db.connection() as c:
            await c.execute("SELECT pg_terminate_backend($1)", pid)
        with pytest.raises(
            (asyncpg.exceptions.AdminShutdownError, asyncpg.exceptions.ConnectionDoesNotExistError)
        ):
            await build
    finally:
        await tx.rollback()  # type: ignore[attr-defined]
        await conn.close()  # type: ignore[attr-defined]
        builder.terminate()
    assert await invalid_ann_indexes(db) == [f"ann_s{space.id}_g7_ivfflat"]
    report = await refresh_space(db, small_settings(), space)
    assert f"ann_s{space.id}_g7_ivfflat" in report["dropped"]
    assert await invalid_ann_indexes(db) == []


async def test_drop_invalid_everywhere_spares_a_build_in_progress(db: Database) -> None:
    space = await make_space(db, 1500)
    conn, tx = await _hold_writer(db)
    try:
        task = asyncio.create_task(refresh_space(db, small_settings(), space))
        async with db.connection() as c:
            for _ in range(400):
                if await c.fetchval(
                    "SELECT count(*) FROM pg_class WHERE relname LIKE 'ann\\_%' AND relkind = 'i'"
                ):
                    break
                await asyncio.sleep(0.02)
        # The build holds the space's lock and shows in pg_stat_progress_create_index: not touched.
        assert await drop_invalid_everywhere(db.target) == []
        with pytest.raises(AnnIndexError, match="Another process"):
            await refresh_space(db, small_settings(), space)
    finally:
        await tx.rollback()  # type: ignore[attr-defined]
        await conn.close()  # type: ignore[attr-defined]
    report = await task
    assert report["built"]
    assert await invalid_ann_indexes(db) == []


async def test_search_statement_uses_the_partial_expression_index(db: Database) -> None:
    async with db.connection() as conn:
        space_id, vectors, _ = await synthetic_corpus(conn, count=2000, dimensions=DIMS)
        space = next(s for s in await spaces(conn) if s.id == space_id)
    report = await refresh_space(db, small_settings(method="hnsw"), space)
    from mahavishnu_assets.search.filters import SearchFilters
    from mahavishnu_assets.search.sql import vector_statement

    async with db.connection() as conn:
        for exact, expect in ((False, True), (True, False)):
            st = vector_statement(space_id, DIMS, vectors[0], 10, SearchFilters(), None, exact=exact)
            plan = await conn.fetchval("EXPLAIN (FORMAT JSON) " + st.sql, *st.args)
            assert (report["index"] in str(plan)) is expect


async def test_maintenance_drops_the_index_of_a_deleted_space(db: Database) -> None:
    space = await make_space(db, 1200)
    await refresh_space(db, small_settings(), space)
    async with db.connection() as conn:
        await conn.execute("DELETE FROM mahavishnu.embedding_spaces WHERE id = $1", space.id)
    done = await rebuild_drifted_indexes(db, small_settings())
    assert [d["action"] for d in done] == ["dropped_leftover"]
    async with db.connection() as conn:
        assert await live_indexes(conn) == []
