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


def convex_combination(
    dense: Sequence[tuple[Key, float]], lexical: Sequence[tuple[Key, float]], dense_weight: float
) -> list[tuple[Key, float]]:
    """Score = w * cosine + (1 - w) * BM25 / best BM25 of the query; best first.

    The cosine keeps its absolute scale, so an embedder that cannot tell the candidates apart (flat
    similarities, as an English model gives on Korean text) barely moves the lexical order, while one that
    separates them clearly gets its say. A candidate missing from one list gets that list's lowest score.
    """
    best_lexical = max((s for _, s in lexical), default=0.0) or 1.0
    floor_dense = min((s for _, s in dense), default=0.0)
    cosine = dict(dense)
    bm25 = {key: score / best_lexical for key, score in lexical}
    # Lexical order first and a stable sort: ties keep the lexical ranking, so weight 0 reproduces it.
    keys = dict.fromkeys([key for key, _ in lexical] + [key for key, _ in dense])
    scores = {
        key: dense_weight * cosine.get(key, floor_dense) + (1.0 - dense_weight) * bm25.get(key, 0.0)
        for key in keys
    }
    return sorted(scores.items(), key=lambda item: item[1], reverse=True)
