"""Supervised fine-tuning with LoRA: conversations in, an adapter that answers like them out."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from bot.errors import DomainbotError
from training.arguments import SFTArguments
from training.datasets import SFTExample, file_sha256, load_sft
from training.encoding import IGNORE_INDEX, ConversationEncoder, EncodedExample, truncate
from training.model import trained_logits
from training.packing import Row, collate, micro_batches, pack, unpacked
from training.rounds import BaseModel, RoundResult, StepCallback, run_round


class SFTObjective:
    """Mean cross-entropy over the answer tokens of the step."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def units(self, micro: Sequence[Row]) -> int:
        return sum(sum(label != IGNORE_INDEX for label in row.labels) for row in micro)

    def real_tokens(self, micro: Sequence[Row]) -> int:
        return sum(len(row) for row in micro)

    def shape(self, micro: Sequence[Row]) -> tuple[int, int]:
        return len(micro), max(len(row) for row in micro)

    def loss(self, peft_model: object, micro: Sequence[Row], device: torch.device) -> torch.Tensor:
        batch = collate(micro, self.pad_id).to(device)
        return F.cross_entropy(trained_logits(peft_model, batch), batch.targets, reduction="sum")


def encode_examples(
    encoder: ConversationEncoder, examples: Sequence[SFTExample], max_len: int
) -> tuple[list[EncodedExample], int]:
    """The encoded examples and how many had to be cut to `max_len` tokens."""
    encoded: list[EncodedExample] = []
    cut = 0
    for example in examples:
        full = encoder.encode(example.messages, example.last_turn_only)
        kept = truncate(full, max_len)
        cut += kept is not full
        if kept is not None:
            encoded.append(kept)
    if not encoded:
        raise DomainbotError(f"No example keeps an answer token within --max-seq-len {max_len}; raise it.")
    return encoded, cut


def train_sft(
    args: SFTArguments,
    base: BaseModel,
    run_dir: Path,
    device: str = "auto",
    resume: bool = False,
    on_step: StepCallback | None = None,
) -> RoundResult:
    examples = load_sft(args.data, args.format)
    encoder = ConversationEncoder(base.folder, args.prompt_format)
    encoded, cut = encode_examples(encoder, examples, args.max_seq_len)
    rows = pack(encoded, args.max_seq_len) if args.packing else unpacked(encoded)
    objective = SFTObjective(encoder.pad_id)

    def epoch_batches(epoch: int) -> list[list[Row]]:
        return micro_batches(rows, args.micro_batch_size, args.seed + 1000 * epoch)

    per_epoch = len(epoch_batches(0))
    data = {
        "path": args.data.name,
        "sha256": file_sha256(args.data),
        "format": args.format,
        "rows": len(examples),
        "truncated": cut,
        "trained_tokens": sum(example.trained_tokens for example in encoded),
        "packed_rows": len(rows),
    }
    return run_round("sft", args, base, data, objective, epoch_batches, per_epoch, run_dir, device, resume, on_step)
