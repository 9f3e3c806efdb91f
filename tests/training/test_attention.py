"""Per-example attention on packed rows computes what the block-diagonal mask computes, forwards and backwards."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from tests.helpers import build_tiny_model
from training.arguments import LoraArguments
from training.attention import PACKED_SDPA, attention_for, register_packed_attention, segment_lengths
from training.model import load_for_training, plan_precision


@pytest.mark.parametrize(
    ("positions", "expected"),
    [
        ([0, 1, 2, 0, 1, 0], [3, 2, 1]),
        ([0, 1, 2, 3], [4]),
        ([7, 8, 9], [3]),  # continuing from a cache: one piece
        ([4, 5, 0, 1], [2, 2]),
    ],
)
def test_segment_lengths(positions: list[int], expected: list[int]) -> None:
    assert segment_lengths(torch.tensor(positions)) == expected


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", hidden_size=32)


def _model(folder: Path, attention: str) -> Any:
    from transformers import AutoModelForCausalLM

    register_packed_attention()
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation=attention)
    model.config.use_cache = False
    return model


def _run(model: Any, **inputs: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Last hidden states and the gradients of every weight for a loss on them."""
    model.zero_grad()
    hidden = model.get_decoder()(**inputs, use_cache=False).last_hidden_state
    (hidden.square() * torch.linspace(0, 1, hidden.shape[-1])).sum().backward()
    return hidden.detach(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def test_packed_rows_match_the_block_diagonal_mask(tiny: Path) -> None:
    torch.manual_seed(0)
    lengths = [[5, 9, 3, 1], [12, 6]]  # the second row ends in 0..n padding positions, as collate writes them
    input_ids = torch.randint(3, 200, (2, 18))
    position_ids = torch.cat([torch.cat([torch.arange(n) for n in row]).unsqueeze(0) for row in lengths])
    stock, stock_grads = _run(_model(tiny, "sdpa"), input_ids=input_ids, position_ids=position_ids)
    packed, packed_grads = _run(_model(tiny, PACKED_SDPA), input_ids=input_ids, position_ids=position_ids)

    torch.testing.assert_close(packed, stock, rtol=1e-4, atol=1e-5)
    assert packed_grads.keys() == stock_grads.keys() and len(packed_grads) > 10
    for name, grad in stock_grads.items():
        torch.testing.assert_close(packed_grads[name], grad, rtol=1e-4, atol=1e-5, msg=name)


def test_packed_row_matches_each_example_alone(tiny: Path) -> None:
    torch.manual_seed(1)
    first, second = torch.randint(3, 200, (1, 7)), torch.randint(3, 200, (1, 4))
    model = _model(tiny, PACKED_SDPA)
    packed, _ = _run(
        model, input_ids=torch.cat([first, second], 1), position_ids=torch.tensor([[*range(7), *range(4)]])
    )
    alone = torch.cat([_run(model, input_ids=first)[0], _run(model, input_ids=second)[0]], 1)
    torch.testing.assert_close(packed, alone, rtol=1e-4, atol=1e-5)


def test_a_padding_mask_takes_the_stock_path(tiny: Path) -> None:
    torch.manual_seed(2)
    input_ids = torch.randint(3, 200, (2, 6))
    attention_mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]])
    stock, _ = _run(_model(tiny, "sdpa"), input_ids=input_ids, attention_mask=attention_mask)
    packed, _ = _run(_model(tiny, PACKED_SDPA), input_ids=input_ids, attention_mask=attention_mask)
    torch.testing.assert_close(packed, stock, rtol=1e-4, atol=1e-5)


def test_training_on_the_cpu_uses_packed_attention(tiny: Path) -> None:
    cpu = torch.device("cpu")
    model = load_for_training(tiny, cpu, plan_precision("fp32", cpu), LoraArguments(rank=2, alpha=4), seed=0)
    assert model.get_base_model().config._attn_implementation == PACKED_SDPA
    assert attention_for(torch.device("cuda")) == "sdpa"
