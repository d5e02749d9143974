"""Reciprocal rank fusion: combine ranked lists by rank alone, so scores of different scales never mix."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

T = TypeVar("T")

RRF_K = 60  # the constant of Cormack et al. (2009); dampens the weight of the very first ranks


def rrf(
    lists: Sequence[Sequence[T]],
    key: Callable[[T], Hashable],
    tie: Callable[[T], tuple[object, ...]],
    *,
    k: int = RRF_K,
    limit: int | None = None,
) -> list[tuple[T, float, list[int | None]]]:
    """Items of all lists by sum of 1/(k + rank), best first; equal sums ordered by `tie`.

    Returns (item, fused score, rank in each list or None).
    """
    scores: dict[Hashable, float] = {}
    first: dict[Hashable, T] = {}
    ranks: dict[Hashable, list[int | None]] = {}
    for which, ranked in enumerate(lists):
        for rank, item in enumerate(ranked, start=1):
            ident = key(item)
            if ident in ranks and ranks[ident][which] is not None:
                continue  # a duplicate inside one list counts once, at its best rank
            scores[ident] = scores.get(ident, 0.0) + 1.0 / (k + rank)
            first.setdefault(ident, item)
            ranks.setdefault(ident, [None] * len(lists))[which] = rank
    ordered = sorted(scores, key=lambda ident: (-scores[ident], tie(first[ident])))
    if limit is not None:
        ordered = ordered[:limit]
    return [(first[i], scores[i], ranks[i]) for i in ordered]
