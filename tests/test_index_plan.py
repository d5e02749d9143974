"""The index choice rule and the SQL it writes, as plain functions."""

from __future__ import annotations

import pytest

from mahavishnu_assets.index.maintenance import decide, drifted
from mahavishnu_assets.index.plan import (
    choose_plan,
    create_index_sql,
    index_name,
    ivfflat_lists,
    maintenance_work_mem_mb,
    parse_index_name,
)
from mahavishnu_assets.search.fusion import rrf
from mahavishnu_assets.settings import IndexSettings


def test_small_tables_use_exact_search_and_say_so() -> None:
    plan = choose_plan(9_999, 768, IndexSettings())
    assert plan.method is None and not plan.builds
    assert "min_rows_for_index" in plan.reason and "exact" in plan.reason


def test_medium_tables_get_ivfflat_with_pgvector_lists_rule() -> None:
    plan = choose_plan(50_000, 768, IndexSettings())
    assert plan.method == "ivfflat"
    assert plan.params == {"lists": 50}
    assert plan.lists_rule == "rows/1000"


def test_large_tables_get_hnsw() -> None:
    settings = IndexSettings()
    plan = choose_plan(settings.hnsw_threshold_rows, 768, settings)
    assert plan.method == "hnsw"
    assert plan.params == {"m": settings.hnsw_m, "ef_construction": settings.hnsw_ef_construction}


def test_settings_can_force_a_method_and_the_sqrt_rule() -> None:
    assert choose_plan(2_000_000, 768, IndexSettings(method="ivfflat")).params == {"lists": 1414}
    assert choose_plan(20_000, 768, IndexSettings(method="hnsw")).method == "hnsw"
    plan = choose_plan(40_000, 768, IndexSettings(lists_rule="sqrt"))
    assert plan.params == {"lists": 200} and plan.lists_rule == "sqrt(rows)"


@pytest.mark.parametrize(
    ("rows", "rule", "lists"),
    [
        (1, "pgvector", 1),
        (999, "pgvector", 1),
        (10_000, "pgvector", 10),
        (1_000_000, "pgvector", 1000),
        (4_000_000, "pgvector", 2000),
        (10_000, "sqrt", 100),
        (10**10, "pgvector", 32768),
    ],
)
def test_lists_rule(rows: int, rule: str, lists: int) -> None:
    assert ivfflat_lists(rows, rule) == lists


def test_too_many_dimensions_means_exact_and_halfvec_above_2000() -> None:
    assert choose_plan(10**6, 5000, IndexSettings()).method is None
    plan = choose_plan(50_000, 3072, IndexSettings())
    sql = create_index_sql(plan, 7, index_name(7, 1, "ivfflat"))
    assert "embedding::halfvec(3072)" in sql and "halfvec_cosine_ops" in sql


def test_index_sql_uses_only_integers_and_allowlisted_names() -> None:
    plan = choose_plan(20_000, 768, IndexSettings(method="hnsw"))
    name = index_name(3, 2, "hnsw")
    assert name == "ann_s3_g2_hnsw" and parse_index_name(name) == (3, 2, "hnsw")
    sql = create_index_sql(plan, 3, name)
    assert sql == (
        "CREATE INDEX CONCURRENTLY ann_s3_g2_hnsw ON mahavishnu.embeddings USING hnsw "
        "((embedding::vector(768)) vector_cosine_ops) WITH (ef_construction = 64, m = 16) WHERE space_id = 3"
    )
    with pytest.raises(ValueError):
        create_index_sql(plan, 3, "ann_x; DROP TABLE t")
    with pytest.raises(ValueError):
        index_name(3, 1, "gist")
    assert parse_index_name("ann_s3_g2_hnsw_extra") is None


def test_maintenance_work_mem_grows_with_rows_and_is_capped() -> None:
    small = maintenance_work_mem_mb(choose_plan(20_000, 768, IndexSettings(method="hnsw")), 2048)
    big = maintenance_work_mem_mb(choose_plan(400_000, 768, IndexSettings(method="hnsw")), 2048)
    assert 64 <= small < big <= 2048
    assert maintenance_work_mem_mb(choose_plan(10**7, 768, IndexSettings()), 2048) == 2048


def test_drift_both_ways() -> None:
    assert not drifted(10_000, 19_999, 2.0)
    assert drifted(10_000, 20_000, 2.0)
    assert drifted(10_000, 5_000, 2.0)
    assert not drifted(10_000, 5_001, 2.0)


def test_decide() -> None:
    settings = IndexSettings()
    plan = choose_plan(50_000, 768, settings)
    facts = {"method": "ivfflat", "params": {"lists": 30}, "lists_rule": "rows/1000", "rows_at_build": 30_000}
    assert decide(plan, facts, True, settings).build is False
    assert decide(plan, facts, False, settings).build is True  # index gone or invalid
    assert decide(plan, {**facts, "rows_at_build": 20_000}, True, settings).build is True  # drifted
    assert decide(plan, facts, True, settings, force=True).build is True
    hnsw = choose_plan(50_000, 768, IndexSettings(method="hnsw"))
    assert "method changed" in decide(hnsw, facts, True, settings).reason
    tiny = choose_plan(100, 768, settings)
    assert decide(tiny, facts, True, settings).drop is True


def test_rrf_orders_by_fused_rank_then_tie_key() -> None:
    a = ["x", "y", "z"]
    b = ["y", "w"]
    fused = rrf([a, b], key=lambda s: s, tie=lambda s: (s,))
    assert [item for item, _, _ in fused] == ["y", "x", "w", "z"]
    assert fused[0][2] == [2, 1]
    assert fused[1][1] == pytest.approx(1 / 61)
    # Equal fused scores fall back to the tie key, so the order is deterministic.
    even = rrf([["b"], ["a"]], key=lambda s: s, tie=lambda s: (s,))
    assert [item for item, _, _ in even] == ["a", "b"]
