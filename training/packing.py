"""Packing short examples into full sequences, and collating them into tensors.

Packed examples share a row but not attention: each example's positions restart at 0, and transformers turns
restarting `position_ids` (with no attention mask and no cache) into a block-diagonal causal mask, so a token
attends only to earlier tokens of its own example and its rotary positions are those it would have alone.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from training.encoding import IGNORE_INDEX, EncodedExample


@dataclass
class Row:
    """One training sequence: one example, or several packed end to end."""

    input_ids: list[int] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    position_ids: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.input_ids)

    def add(self, example: EncodedExample) -> None:
        self.input_ids += example.input_ids
        # An example's first token would be predicted from the previous example's last one: never a target.
        self.labels += [IGNORE_INDEX, *example.labels[1:]]
        self.position_ids += range(len(example))


def pack(examples: Sequence[EncodedExample], max_len: int) -> list[Row]:
    """First-fit decreasing: few rows, each as full as the examples allow (no example is split)."""
    rows: list[Row] = []
    for example in sorted(examples, key=len, reverse=True):
        target = next((row for row in rows if len(row) + len(example) <= max_len), None)
        if target is None:
            target = Row()
            rows.append(target)
        target.add(example)
    return rows


def unpacked(examples: Sequence[EncodedExample]) -> list[Row]:
    rows = []
    for example in examples:
        row = Row()
        row.add(example)
        rows.append(row)
    return rows


def micro_batches(rows: Sequence[Row], size: int, seed: int) -> list[list[Row]]:
    """Rows in a seeded random order, `size` at a time; similar lengths share a batch to waste little padding."""
    order = list(rows)
    random.Random(seed).shuffle(order)
    # Sort within windows of 50 batches: batches keep random content but pad little.
    window = size * 50
    batches: list[list[Row]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=len, reverse=True)
        batches += [chunk[i : i + size] for i in range(0, len(chunk), size)]
    random.Random(seed + 1).shuffle(batches)
    return batches


@dataclass
class Batch:
    input_ids: torch.Tensor  # (B, T)
    position_ids: torch.Tensor  # (B, T)
    target_index: torch.Tensor  # (N,) flat positions in B*T whose next token is trained
    targets: torch.Tensor  # (N,) those next tokens
    real_tokens: int  # tokens that are not padding

    @property
    def trained_tokens(self) -> int:
        return int(self.targets.numel())

    def to(self, device: torch.device) -> Batch:
        return Batch(
            self.input_ids.to(device),
            self.position_ids.to(device),
            self.target_index.to(device),
            self.targets.to(device),
            self.real_tokens,
        )


def collate(rows: Sequence[Row], pad_id: int) -> Batch:
    """Pad to the longest row; padding forms its own segment (positions from 0) and is never a target."""
    width = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    position_ids = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    for i, row in enumerate(rows):
        n = len(row)
        input_ids[i, :n] = torch.tensor(row.input_ids)
        labels[i, :n] = torch.tensor(row.labels)
        position_ids[i, :n] = torch.tensor(row.position_ids)
        position_ids[i, n:] = torch.arange(width - n)
    # Position t predicts token t+1: shift the labels left by one.
    next_labels = torch.full_like(labels, IGNORE_INDEX)
    next_labels[:, :-1] = labels[:, 1:]
    flat = next_labels.flatten()
    target_index = (flat != IGNORE_INDEX).nonzero().squeeze(1)
    return Batch(input_ids, position_ids, target_index, flat[target_index], sum(len(row) for row in rows))
