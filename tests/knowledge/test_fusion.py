from __future__ import annotations

import pytest

from knowledge.fusion import convex_combination, reciprocal_rank_fusion


def test_rrf_weight_zero_and_one_reproduce_one_ranking() -> None:
    dense, lexical = ["a", "b", "c"], ["c", "b", "d"]
    assert [k for k, _ in reciprocal_rank_fusion(dense, lexical, 1.0)] == dense
    assert [k for k, _ in reciprocal_rank_fusion(dense, lexical, 0.0)] == lexical


def test_rrf_prefers_what_both_rank_high() -> None:
    fused = reciprocal_rank_fusion(["a", "b", "c"], ["b", "d", "a"], 0.5)
    assert fused[0][0] == "b"


def test_convex_flat_dense_scores_keep_the_lexical_order() -> None:
    # An embedder that cannot tell the candidates apart must not reorder the lexical ranking.
    dense = [("x", 0.31), ("y", 0.30), ("z", 0.29)]
    lexical = [("z", 12.0), ("y", 9.0), ("x", 6.0)]
    assert [k for k, _ in convex_combination(dense, lexical, 0.3)] == ["z", "y", "x"]


def test_convex_clear_dense_signal_wins_a_close_lexical_call() -> None:
    dense = [("y", 0.9), ("z", 0.2)]
    lexical = [("z", 10.0), ("y", 9.5)]
    assert convex_combination(dense, lexical, 0.3)[0][0] == "y"


def test_convex_weight_zero_reproduces_the_lexical_ranking_even_with_ties() -> None:
    lexical = [("b", 5.0), ("a", 5.0), ("c", 5.0), ("d", 1.0)]
    dense = [("d", 0.9), ("c", 0.8)]
    assert [k for k, _ in convex_combination(dense, lexical, 0.0)] == ["b", "a", "c", "d"]


@pytest.mark.parametrize("weight", [0.0, 0.5, 1.0])
def test_convex_scores_candidates_from_either_list(weight: float) -> None:
    fused = dict(convex_combination([("a", 0.5)], [("b", 3.0)], weight))
    assert set(fused) == {"a", "b"}
