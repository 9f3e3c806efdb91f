"""The concurrent-chats benchmark runs end to end on a toy random-weight shape (so the script cannot rot)."""

from __future__ import annotations

import pytest

from bench.concurrent_chats import SHAPES, main


def test_the_benchmark_runs_and_batched_answers_equal_one_at_a_time(capsys: pytest.CaptureFixture[str]) -> None:
    args = "--shape tiny --device cpu --chats 3 --new-tokens 6 --baseline-chats 3 --rounds 1"
    summary = main(args.split())
    tokens = summary["tokens"]
    assert tokens["3 concurrent (batch 3)"] == 3 * 6  # every answer runs to its full length
    assert tokens["one at a time (transformers backend)"] == 3 * 6
    assert tokens["model.generate, batch 1"] == 6
    assert summary["same_as_alone"] == {"3": 3}
    assert all(rate > 0 for rate in summary["tok_s"].values())
    assert "x1.00" in capsys.readouterr().out


def test_the_1b_shape_is_llama_1b_like() -> None:
    shape = SHAPES["llama1b"]
    assert (shape["hidden_size"], shape["num_hidden_layers"], shape["intermediate_size"]) == (2048, 16, 8192)
    assert (shape["num_attention_heads"], shape["num_key_value_heads"], shape["vocab_size"]) == (32, 8, 32000)
