"""Attention for packed rows, one example at a time.

Packed rows restart their `position_ids` at each example. With sdpa, transformers turns that into a
block-diagonal mask, and the kernel still scores every (query, key) pair of the row before masking most of them
away: a 512-token row of four examples does about eight times the attention work its examples need, and with a
mask sdpa also copies the key/value heads for grouped-query attention. On the CPU that was a third of a LoRA
step of SmolLM2-135M. `packed_sdpa_forward` instead runs causal sdpa on each example's own slice of the row,
with the math kernel: for examples of a few hundred tokens its backward pass is about twice as fast as the CPU
flash kernel's, and a step spends more time there than in the forward pass.

On a GPU attention is a small share of a step and every small call costs a kernel launch, so `attention_for`
keeps stock sdpa there: one masked kernel a layer.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

PACKED_SDPA = "domainbot_packed_sdpa"
# Per example, the math kernel: its backward pass beats the CPU flash kernel's on examples of a few hundred tokens.
SEGMENT_KERNEL = SDPBackend.MATH


def segment_lengths(positions: torch.Tensor) -> list[int]:
    """Lengths of the examples in one row, (T,) positions that restart at 0 where an example begins."""
    starts = (positions == 0).nonzero().flatten().tolist()
    if not starts or starts[0] != 0:  # a row continuing from a cache: one piece
        starts = [0, *starts]
    bounds = [*starts, positions.numel()]
    return [end - start for start, end in itertools.pairwise(bounds)]


def packed_sdpa_forward(
    module: torch.nn.Module,
    query: torch.Tensor,  # (B, H, T, D)
    key: torch.Tensor,  # (B, H_kv, T, D)
    value: torch.Tensor,  # (B, H_kv, T, D)
    attention_mask: torch.Tensor | None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Causal attention within each example of each row; (B, T, H, D) as transformers' attention functions return."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    position_ids = kwargs.pop("position_ids", None)
    rows, _, length, _ = query.shape
    if attention_mask is not None or position_ids is None or key.shape[2] != length:
        # A padding mask or a cache: not a packed training row, so the stock path handles it.
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    positions = position_ids.expand(rows, -1)
    outputs = []
    for row in range(rows):
        lengths = segment_lengths(positions[row])
        pieces = zip(
            query[row : row + 1].split(lengths, dim=2),
            key[row : row + 1].split(lengths, dim=2),
            value[row : row + 1].split(lengths, dim=2),
            strict=True,
        )
        with sdpa_kernel(SEGMENT_KERNEL):
            parts = [sdpa_attention_forward(module, q, k, v, None, **kwargs)[0] for q, k, v in pieces]
        outputs.append(torch.cat(parts, dim=1))  # (1, T, H, D)
    return torch.cat(outputs, dim=0), None


def packed_mask(*args: Any, **kwargs: Any) -> torch.Tensor | None:
    """No mask for packed rows (`packed_sdpa_forward` splits them); a padding mask is built as for sdpa."""
    from transformers.masking_utils import sdpa_mask

    if kwargs.get("attention_mask") is None:
        return None
    return sdpa_mask(*args, **kwargs)


def register_packed_attention() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(PACKED_SDPA, packed_sdpa_forward)
    AttentionMaskInterface.register(PACKED_SDPA, packed_mask)


def attention_for(device: torch.device) -> str:
    """The attention implementation to train with on `device`."""
    if device.type == "cpu":
        register_packed_attention()
        return PACKED_SDPA
    return "sdpa"
