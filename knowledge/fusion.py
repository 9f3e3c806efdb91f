"""Fuse the dense and lexical rankings into one: weighted reciprocal rank fusion."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar

Key = TypeVar("Key", bound=Hashable)


def reciprocal_rank_fusion(
    dense: Sequence[Key], lexical: Sequence[Key], dense_weight: float, k: int = 60
) -> list[tuple[Key, float]]:
    """Score = w / (k + dense rank) + (1 - w) / (k + lexical rank), ranks from 1; best first.

    Rank-based, so the dense cosine and the BM25 scales never need calibrating against each other.
    """
    scores: dict[Key, float] = {}
    for ranking, weight in ((dense, dense_weight), (lexical, 1.0 - dense_weight)):
        if weight == 0.0:
            continue
        for rank, key in enumerate(ranking, start=1):
            scores[key] = scores.get(key, 0.0) + weight / (k + rank)
    return sorted(scores.items(), key=lambda item: item[1], reverse=True)
