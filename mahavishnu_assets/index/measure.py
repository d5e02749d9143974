"""Recall@10 of an ANN index against exact search, latency and QPS of both, and tuning to a target recall.

The queries are given by the caller: texts like real queries embedded through the space's embedder
(index/queries.py), and a held-out sample measured at the tuned setting to check the figure. Without an
embedder for the space, `sample_queries` stands in: stored vectors moved by a fixed random offset so that no
query is its own nearest neighbour. That stand-in flatters the index (chunk-like vectors sit where the index
does best), which is why it is only a fallback and announced as one.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import asyncpg
import numpy as np

from mahavishnu_assets.index.plan import SEARCH_PARAM, K, ann_distance, exact_distance
from mahavishnu_assets.index.synthetic import perturb

QUERY_NOISE = 0.6  # a query has cosine ~0.86 with the stored vector it came from
# Any fixed seed makes measurements repeatable; not 0, which synthetic test data is often generated with (the
# offsets would then be the very directions the data was built from).
QUERY_SEED = 0x5EED_1DEA
CONFIDENCE_Z = 1.645
IVFFLAT_PROBES = [
    1,
    2,
    3,
    4,
    5,
    6,
    8,
    10,
    12,
    14,
    16,
    20,
    24,
    28,
    32,
    40,
    48,
    56,
    64,
    80,
    96,
    112,
    128,
    160,
    192,
    256,
    320,
    384,
    512,
    640,
    768,
    1024,
    1536,
    2048,
    4096,
    8192,
    16384,
    32768,
]
HNSW_EF_SEARCH = [
    10,
    12,
    16,
    20,
    24,
    28,
    32,
    40,
    48,
    56,
    64,
    80,
    96,
    112,
    128,
    160,
    192,
    256,
    320,
    400,
    500,
    640,
    800,
    1000,
]


@dataclass(frozen=True)
class Latency:
    queries: int
    p50_ms: float
    p99_ms: float
    qps: float

    @classmethod
    def of(cls, seconds: list[float]) -> Latency:
        total = sum(seconds)
        ms = np.asarray(seconds) * 1000.0
        return cls(
            queries=len(seconds),
            p50_ms=round(float(np.percentile(ms, 50)), 3) if len(ms) else 0.0,
            p99_ms=round(float(np.percentile(ms, 99)), 3) if len(ms) else 0.0,
            qps=round(len(seconds) / total, 2) if total > 0 else 0.0,
        )


@dataclass
class Measurement:
    recall_at_10: float | None
    exact: Latency
    ann: Latency | None = None
    search_param: str | None = None
    search_value: int | None = None
    tried: list[tuple[int, float, float]] = field(default_factory=list)  # (value, recall, lower bound)
    # Recall at the tuned value on queries the tuner never saw (None: no held-out sample).
    heldout_recall_at_10: float | None = None
    heldout_queries: int = 0

    @property
    def speedup(self) -> float | None:
        if self.ann is None or self.exact.qps <= 0:
            return None
        return round(self.ann.qps / self.exact.qps, 2)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["speedup"] = self.speedup
        return out


def candidates(method: str, params: dict[str, int]) -> list[int]:
    """Search parameter values to try, cheapest first."""
    if method == "ivfflat":
        lists = int(params.get("lists", 100))
        values = [p for p in IVFFLAT_PROBES if p < lists] + [lists]
        return sorted(set(values))
    if method == "hnsw":
        return list(HNSW_EF_SEARCH)
    raise ValueError(f"unknown method {method!r}")


async def sample_queries(conn: asyncpg.Connection, space_id: int, count: int, *, seed: int = 0) -> np.ndarray:
    """`count` stored vectors picked by content hash (uniform, deterministic, read by the primary key)."""
    rows = await conn.fetch(
        """SELECT embedding FROM mahavishnu.embeddings WHERE space_id = $1
            ORDER BY content_hash LIMIT $2""",
        int(space_id),
        int(count),
    )
    if not rows:
        return np.zeros((0, 0), dtype=np.float32)
    base = np.stack([_as_array(r["embedding"]) for r in rows])
    return perturb(base, np.random.default_rng(seed), QUERY_NOISE)


def _as_array(value: Any) -> np.ndarray:
    if hasattr(value, "to_numpy"):
        return np.asarray(value.to_numpy(), dtype=np.float32)
    return np.asarray(value, dtype=np.float32)


# Measure the index itself: at small sizes the planner may prefer the primary key plus a sort (exact, and
# cheap there), which would make the "ANN" figures those of exact search.
_INDEX_ONLY = "SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off; SET LOCAL enable_sort = off"


@dataclass(frozen=True)
class Neighbours:
    """One query's top-k: content hashes nearest first, with their cosine distances."""

    hashes: list[bytes]
    distances: list[float]


# A result as close to the query as the k-th true neighbour is as good an answer as it: when several rows tie
# at the k-th distance (duplicated chunks, a one-word query far from most rows), which of them exact search
# lists is arbitrary, and counting the others as misses would blame the index for the tie.
TIE_TOLERANCE = 1e-6


def _topk_sql(space_id: int, dimensions: int, exact: bool) -> str:
    # space_id is written as a literal so the planner can prove the partial index's predicate.
    distance = exact_distance("$1") if exact else ann_distance(dimensions, "$1")
    tie = ", e.content_hash" if exact else ""  # an index scan yields only its own order
    return (
        f"SELECT e.content_hash, {distance} AS distance FROM mahavishnu.embeddings e "  # noqa: S608
        f"WHERE e.space_id = {int(space_id)} ORDER BY {distance}{tie} LIMIT {K}"
    )


def _neighbours(rows: list[Any]) -> Neighbours:
    return Neighbours([r[0] for r in rows], [float(r[1]) for r in rows])


async def exact_topk(
    conn: asyncpg.Connection, space_id: int, dimensions: int, queries: np.ndarray
) -> tuple[list[Neighbours], Latency]:
    """The true top-10 of every query, with every index scan off."""
    results: list[Neighbours] = []
    seconds: list[float] = []
    async with conn.transaction():
        await conn.execute("SET LOCAL enable_indexscan = off; SET LOCAL enable_bitmapscan = off")
        statement = await conn.prepare(_topk_sql(space_id, dimensions, exact=True))
        for q in queries:
            started = time.perf_counter()
            rows = await statement.fetch(q)
            seconds.append(time.perf_counter() - started)
            results.append(_neighbours(rows))
    return results, Latency.of(seconds)


async def ann_topk(
    conn: asyncpg.Connection,
    space_id: int,
    dimensions: int,
    method: str,
    value: int,
    queries: np.ndarray,
) -> tuple[list[Neighbours], Latency]:
    """Top-10 through the index with the search parameter at `value`."""
    results: list[Neighbours] = []
    seconds: list[float] = []
    async with conn.transaction():
        await conn.execute(_INDEX_ONLY)
        await conn.execute("SELECT set_config($1, $2, true)", SEARCH_PARAM[method], str(int(value)))
        statement = await conn.prepare(_topk_sql(space_id, dimensions, exact=False))
        for q in queries:
            started = time.perf_counter()
            rows = await statement.fetch(q)
            seconds.append(time.perf_counter() - started)
            results.append(_neighbours(rows))
    return results, Latency.of(seconds)


async def uses_index(conn: asyncpg.Connection, space_id: int, dimensions: int, index_name: str) -> bool:
    """Whether the ANN query's plan scans `index_name` (else recall would measure a sequential scan)."""
    probe = np.zeros(dimensions, dtype=np.float32)
    probe[0] = 1.0
    async with conn.transaction():
        await conn.execute(_INDEX_ONLY)
        plan = await conn.fetchval(
            "EXPLAIN (FORMAT JSON) " + _topk_sql(space_id, dimensions, exact=False), probe
        )
    return f'"{index_name}"' in str(plan)


def per_query_recall(truth: list[Neighbours], found: list[Neighbours]) -> list[float]:
    """Per query: the share of the true top-k found, a found row tied with the k-th true one counting as found."""
    out = []
    for want, got in zip(truth, found, strict=True):
        if not want.hashes:
            continue
        wanted = set(want.hashes)
        limit = want.distances[-1] + TIE_TOLERANCE
        hits = sum(1 for h, d in zip(got.hashes, got.distances, strict=True) if h in wanted or d <= limit)
        out.append(min(hits, len(want.hashes)) / len(want.hashes))
    return out


def recall(truth: list[Neighbours], found: list[Neighbours]) -> float:
    values = per_query_recall(truth, found)
    return round(sum(values) / len(values), 4) if values else 1.0


def recall_lower_bound(values: list[float]) -> float:
    """A one-sided 95% lower bound of the mean recall: the sample is small, and picking the smallest value
    that reaches the target on it would otherwise fall short on other queries about half the time."""
    if len(values) < 2:
        return values[0] if values else 1.0
    mean = float(np.mean(values))
    return mean - CONFIDENCE_Z * float(np.std(values, ddof=1)) / len(values) ** 0.5


async def tune(
    conn: asyncpg.Connection,
    space_id: int,
    dimensions: int,
    method: str,
    params: dict[str, int],
    queries: np.ndarray,
    truth: list[Neighbours],
    target: float,
) -> tuple[int, float, list[tuple[int, float, float]]]:
    """The smallest search parameter whose recall reaches `target` with 95% confidence (binary search:
    recall grows with the parameter).

    When even the largest value misses, that value is returned with its recall, and the blocking asset check
    reports the miss.
    """
    values = candidates(method, params)
    seen: dict[int, list[float]] = {}

    async def reaches(value: int) -> bool:
        if value not in seen:
            found, _ = await ann_topk(conn, space_id, dimensions, method, value, queries)
            seen[value] = per_query_recall(truth, found)
        return recall_lower_bound(seen[value]) >= target or min(seen[value], default=1.0) >= target

    lo, hi = 0, len(values) - 1
    if not await reaches(values[hi]):
        best = values[hi]
    else:
        while lo < hi:
            mid = (lo + hi) // 2
            if await reaches(values[mid]):
                hi = mid
            else:
                lo = mid + 1
        best = values[lo]
    mean = lambda v: round(sum(seen[v]) / len(seen[v]), 4) if seen[v] else 1.0  # noqa: E731
    tried = sorted((v, mean(v), round(recall_lower_bound(seen[v]), 4)) for v in seen)
    return best, mean(best), tried


async def heldout_recall(
    conn: asyncpg.Connection,
    space_id: int,
    dimensions: int,
    method: str,
    value: int,
    queries: np.ndarray,
) -> float | None:
    """Recall@10 through the index at `value` on `queries` (ones the tuner did not see), against exact search:
    the check that the tuner's figure holds for other queries."""
    if len(queries) == 0:
        return None
    truth, _ = await exact_topk(conn, space_id, dimensions, queries)
    found, _ = await ann_topk(conn, space_id, dimensions, method, value, queries)
    return recall(truth, found)


async def measure(
    conn: asyncpg.Connection,
    space_id: int,
    dimensions: int,
    method: str | None,
    params: dict[str, int],
    *,
    target: float,
    sample: int,
    index_name: str | None = None,
    queries: np.ndarray | None = None,
    heldout: np.ndarray | None = None,
) -> Measurement:
    """Exact vs ANN on `queries` (default: `sample` stored vectors moved off themselves); with an index,
    tune its search parameter to `target` first, then measure recall on `heldout` at the tuned value."""
    if queries is None:
        queries = await sample_queries(conn, space_id, sample)
    if len(queries) == 0:
        return Measurement(recall_at_10=None, exact=Latency(0, 0.0, 0.0, 0.0))
    truth, exact_latency = await exact_topk(conn, space_id, dimensions, queries)
    if method is None:
        return Measurement(recall_at_10=None, exact=exact_latency)
    if index_name is not None and not await uses_index(conn, space_id, dimensions, index_name):
        from mahavishnu_assets.errors import AnnIndexError

        raise AnnIndexError(
            f"The planner does not use {index_name} for space {space_id}; recall cannot be measured",
            suggestion="Run ANALYZE mahavishnu.embeddings and `mahavishnu index` again.",
        )
    value, reached, tried = await tune(conn, space_id, dimensions, method, params, queries, truth, target)
    # Timed at the chosen value, warm, on the same queries as exact search.
    await ann_topk(conn, space_id, dimensions, method, value, queries[: min(5, len(queries))])
    _, ann_latency = await ann_topk(conn, space_id, dimensions, method, value, queries)
    held = heldout if heldout is not None else np.zeros((0, dimensions), dtype=np.float32)
    return Measurement(
        recall_at_10=reached,
        exact=exact_latency,
        ann=ann_latency,
        search_param=SEARCH_PARAM[method],
        search_value=value,
        tried=tried,
        heldout_recall_at_10=await heldout_recall(conn, space_id, dimensions, method, value, held),
        heldout_queries=len(held),
    )
