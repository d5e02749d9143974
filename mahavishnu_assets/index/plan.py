"""Which ANN index a space gets, with which parameters, and the SQL text that names it (allowlisted only).

Embeddings of every space share one table keyed by content hash, so an index is per space: an expression
index on `embedding::vector(N)` (pgvector needs typed dimensions) restricted by `WHERE space_id = S`. Queries
use the same expression and predicate, written by the functions here, so the planner can pick the index.
Every identifier and number in that SQL comes from this module's allowlists or from integers.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from mahavishnu_assets.settings import IndexSettings

Method = Literal["ivfflat", "hnsw"]
SCHEMA = "mahavishnu"
TABLE = "mahavishnu.embeddings"
INDEX_PREFIX = "ann_"
K = 10  # recall is measured at 10, the size of a default search
# pgvector indexes `vector` up to 2,000 dimensions and `halfvec` up to 4,000; above that only exact search.
MAX_VECTOR_DIMS = 2000
MAX_HALFVEC_DIMS = 4000
MAX_IVFFLAT_LISTS = 32768
SEARCH_PARAM: dict[str, str] = {"ivfflat": "ivfflat.probes", "hnsw": "hnsw.ef_search"}
OPCLASS: dict[str, str] = {"vector": "vector_cosine_ops", "halfvec": "halfvec_cosine_ops"}
_PARAM = re.compile(r"^\$\d{1,3}$")
_NAME = re.compile(r"^ann_s(?P<space>\d+)_g(?P<generation>\d+)_(?P<method>ivfflat|hnsw)$")


@dataclass(frozen=True)
class IndexPlan:
    """What to build for one space, or why nothing (then searches are exact)."""

    method: Method | None
    rows: int
    dimensions: int
    params: dict[str, int] = field(default_factory=dict)
    lists_rule: str | None = None
    reason: str = ""

    @property
    def builds(self) -> bool:
        return self.method is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method or "exact",
            "rows": self.rows,
            "dimensions": self.dimensions,
            "params": dict(self.params),
            "lists_rule": self.lists_rule,
            "reason": self.reason,
        }


def ivfflat_lists(rows: int, rule: str) -> int:
    """pgvector's guidance: rows/1000 up to 1M rows, sqrt(rows) above; `sqrt` uses sqrt(rows) throughout."""
    if rule == "sqrt" or rows > 1_000_000:
        lists = round(math.sqrt(rows))
    else:
        lists = rows // 1000
    return max(1, min(MAX_IVFFLAT_LISTS, lists))


def vector_type(dimensions: int) -> str | None:
    """The typed vector an index can hold at this size, or None when only exact search fits."""
    if 1 <= dimensions <= MAX_VECTOR_DIMS:
        return "vector"
    if dimensions <= MAX_HALFVEC_DIMS:
        return "halfvec"
    return None


def choose_plan(rows: int, dimensions: int, settings: IndexSettings, method: str | None = None) -> IndexPlan:
    """The method and parameters for `rows` vectors of `dimensions`, from the settings (or `method` forced)."""
    wanted = method or settings.method
    if vector_type(dimensions) is None:
        return IndexPlan(
            None,
            rows,
            dimensions,
            reason=f"{dimensions} dimensions exceed pgvector's index limit "
            f"({MAX_HALFVEC_DIMS}); exact search is used",
        )
    if rows < settings.min_rows_for_index:
        return IndexPlan(
            None,
            rows,
            dimensions,
            reason=f"{rows} rows, below min_rows_for_index={settings.min_rows_for_index}: "
            "exact search is fast enough and always exact",
        )
    if wanted == "auto":
        chosen: Method = "hnsw" if rows >= settings.hnsw_threshold_rows else "ivfflat"
        why = (
            f"auto: {rows} rows {'>=' if chosen == 'hnsw' else '<'} "
            f"hnsw_threshold_rows={settings.hnsw_threshold_rows}"
        )
    elif wanted in ("ivfflat", "hnsw"):
        chosen = "hnsw" if wanted == "hnsw" else "ivfflat"
        why = f"method={wanted} asked for by the settings"
    else:
        raise ValueError(f"unknown index method {wanted!r}")
    if chosen == "hnsw":
        params = {
            "m": settings.hnsw_m,
            "ef_construction": max(settings.hnsw_ef_construction, 2 * settings.hnsw_m),
        }
        return IndexPlan("hnsw", rows, dimensions, params, None, why)
    lists = ivfflat_lists(rows, settings.lists_rule)
    rule = "sqrt(rows)" if settings.lists_rule == "sqrt" or rows > 1_000_000 else "rows/1000"
    return IndexPlan("ivfflat", rows, dimensions, {"lists": lists}, rule, f"{why}; lists = {rule}")


def maintenance_work_mem_mb(plan: IndexPlan, cap_mb: int) -> int:
    """Enough memory for the build to stay in memory (pgvector builds much faster when the graph fits)."""
    vector_bytes = 4 * plan.dimensions + 8
    if plan.method == "hnsw":
        m = plan.params.get("m", 16)
        # Layer-0 neighbours (2m) and upper layers (~m/(m-1) levels of m) at ~16 bytes a candidate, plus
        # per-element bookkeeping.
        per_row = vector_bytes + 16 * (2 * m + m) + 128
    else:
        # The sort of (list, tuple) pairs plus the k-means sample.
        per_row = vector_bytes + 48
    needed = plan.rows * per_row * 1.25 / 1024 / 1024
    return int(max(64, min(cap_mb, math.ceil(needed))))


def index_name(space_id: int, generation: int, method: str) -> str:
    if method not in SEARCH_PARAM:
        raise ValueError(f"unknown index method {method!r}")
    return f"{INDEX_PREFIX}s{int(space_id)}_g{int(generation)}_{method}"


def parse_index_name(name: str) -> tuple[int, int, str] | None:
    """(space_id, generation, method) of an index this module named, else None."""
    m = _NAME.match(name)
    if not m:
        return None
    return int(m["space"]), int(m["generation"]), m["method"]


def _check_param(param: str) -> None:
    if not _PARAM.match(param):
        raise ValueError(f"bad parameter placeholder {param!r}")


def _column(alias: str) -> str:
    if alias and not alias.isidentifier():
        raise ValueError(f"bad alias {alias!r}")
    return f"{alias}.embedding" if alias else "embedding"


def typed_embedding(dimensions: int, alias: str = "e") -> str:
    """The indexed expression: the untyped column cast to the space's size."""
    kind = vector_type(dimensions)
    if kind is None:
        raise ValueError(f"{dimensions} dimensions cannot be indexed")
    return f"({_column(alias)}::{kind}({int(dimensions)}))"


def ann_distance(dimensions: int, param: str = "$1", alias: str = "e") -> str:
    """Cosine distance in the index's expression, so an ORDER BY on it can use the index."""
    kind = vector_type(dimensions)
    _check_param(param)
    return f"{typed_embedding(dimensions, alias)} <=> CAST({param}::vector AS {kind}({int(dimensions)}))"


def exact_distance(param: str = "$1", alias: str = "e") -> str:
    """Cosine distance on the raw column: matches no index expression, so the scan is always exact."""
    _check_param(param)
    return f"{_column(alias)} <=> {param}::vector"


def create_index_sql(plan: IndexPlan, space_id: int, name: str) -> str:
    if plan.method is None:
        raise ValueError("nothing to build")
    if parse_index_name(name) is None:
        raise ValueError(f"index name {name!r} is not one of ours")
    kind = vector_type(plan.dimensions)
    assert kind is not None
    with_ = ", ".join(
        f"{k} = {int(v)}" for k, v in sorted(plan.params.items()) if k in ("lists", "m", "ef_construction")
    )
    return (
        f"CREATE INDEX CONCURRENTLY {name} ON {TABLE} USING {plan.method} "
        f"({typed_embedding(plan.dimensions, alias='')} {OPCLASS[kind]}) "
        f"WITH ({with_}) WHERE space_id = {int(space_id)}"
    )
