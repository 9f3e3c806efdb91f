"""Preference rounds: DPO on chosen/rejected pairs, KTO on answers marked desirable or not.

Both compare the adapted model with the reference: the same base model with the adapter switched off, so no
second copy of the weights is held. Reference log-probabilities of the data are computed once, before the
first step (they never change); KTO's KL estimate scores each prompt with another row's answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from bot.errors import DomainbotError
from training.arguments import PreferenceArguments
from training.datasets import KTOExample, PreferenceExample, file_sha256, load_kto, load_preferences
from training.encoding import ConversationEncoder, EncodedExample, truncate
from training.model import sequence_logprobs
from training.packing import Batch, Row, collate, unpacked
from training.rounds import BaseModel, RoundResult, StepCallback, run_round

REFERENCE_BATCH = 8


@dataclass
class Scored:
    """One encoded answer with its reference log-probability (filled in before training)."""

    row: Row
    reference: float = 0.0


def _fit(encoded: EncodedExample, max_len: int, what: str) -> Row:
    kept = truncate(encoded, max_len)
    if kept is None:
        raise DomainbotError(f"The {what} has no answer token within --max-seq-len {max_len}; raise it.")
    return unpacked([kept])[0]


def _batch(rows: Sequence[Row], pad_id: int, device: torch.device) -> Batch:
    return collate(rows, pad_id).to(device)


def score_references(peft_model: Any, items: Sequence[Scored], pad_id: int, device: torch.device) -> None:
    """Each answer's log-probability under the base model (adapter off), once for the whole round."""
    peft_model.eval()
    with torch.no_grad(), peft_model.disable_adapter():
        for start in range(0, len(items), REFERENCE_BATCH):
            chunk = items[start : start + REFERENCE_BATCH]
            logprobs = sequence_logprobs(peft_model, _batch([s.row for s in chunk], pad_id, device))
            for item, value in zip(chunk, logprobs.tolist(), strict=True):
                item.reference = value
    peft_model.train()


class DPOObjective:
    """-log sigmoid(beta * ((log pi(c) - log ref(c)) - (log pi(r) - log ref(r)))), summed over pairs."""

    def __init__(self, beta: float, pad_id: int) -> None:
        self.beta, self.pad_id = beta, pad_id

    def units(self, micro: Sequence[tuple[Scored, Scored]]) -> int:
        return len(micro)

    def real_tokens(self, micro: Sequence[tuple[Scored, Scored]]) -> int:
        return sum(len(chosen.row) + len(rejected.row) for chosen, rejected in micro)

    def shape(self, micro: Sequence[tuple[Scored, Scored]]) -> tuple[int, int]:
        return 2 * len(micro), max(max(len(c.row), len(r.row)) for c, r in micro)

    def loss(self, peft_model: Any, micro: Sequence[tuple[Scored, Scored]], device: torch.device) -> torch.Tensor:
        rows = [c.row for c, _ in micro] + [r.row for _, r in micro]
        logprobs = sequence_logprobs(peft_model, _batch(rows, self.pad_id, device))  # (2P,)
        chosen, rejected = logprobs[: len(micro)], logprobs[len(micro) :]
        reference = torch.tensor([c.reference - r.reference for c, r in micro], device=device)
        margin = (chosen - rejected) - reference
        return -F.logsigmoid(self.beta * margin).sum()


@dataclass
class KTOItem:
    answer: Scored
    mismatched: Row  # this row's prompt with another row's answer, for the KL estimate
    desirable: bool


class KTOObjective:
    """1 - sigmoid(beta * (log-ratio - z)) for desirable answers, 1 - sigmoid(beta * (z - log-ratio)) otherwise,
    where z, the batch's KL estimate from mismatched prompt/answer rows, is clamped at 0 and carries no gradient."""

    def __init__(self, beta: float, pad_id: int) -> None:
        self.beta, self.pad_id = beta, pad_id

    def units(self, micro: Sequence[KTOItem]) -> int:
        return len(micro)

    def real_tokens(self, micro: Sequence[KTOItem]) -> int:
        return sum(len(item.answer.row) for item in micro)

    def shape(self, micro: Sequence[KTOItem]) -> tuple[int, int]:
        return len(micro), max(len(item.answer.row) for item in micro)

    def loss(self, peft_model: Any, micro: Sequence[KTOItem], device: torch.device) -> torch.Tensor:
        logprobs = sequence_logprobs(peft_model, _batch([i.answer.row for i in micro], self.pad_id, device))
        ratios = logprobs - torch.tensor([i.answer.reference for i in micro], device=device)
        with torch.no_grad():
            kl_batch = _batch([i.mismatched for i in micro], self.pad_id, device)
            policy = sequence_logprobs(peft_model, kl_batch)
            with peft_model.disable_adapter():
                reference = sequence_logprobs(peft_model, kl_batch)
            z = (policy - reference).mean().clamp(min=0) if len(micro) > 1 else torch.zeros((), device=device)
        desirable = torch.tensor([i.desirable for i in micro], device=device)
        losses = torch.where(
            desirable, 1 - torch.sigmoid(self.beta * (ratios - z)), 1 - torch.sigmoid(self.beta * (z - ratios))
        )
        return losses.sum()


def _chunks(items: Sequence[Any], size: int, seed: int) -> list[list[Any]]:
    order = list(items)
    generator = torch.Generator().manual_seed(seed)
    order = [order[i] for i in torch.randperm(len(order), generator=generator).tolist()]
    return [order[i : i + size] for i in range(0, len(order), size)]


def _data(path: Path, rows: int, fmt: str) -> dict[str, Any]:
    return {"path": path.name, "sha256": file_sha256(path), "format": fmt, "rows": rows}


def train_dpo(
    args: PreferenceArguments,
    base: BaseModel,
    run_dir: Path,
    device: str = "auto",
    resume: bool = False,
    on_step: StepCallback | None = None,
) -> RoundResult:
    pairs: list[PreferenceExample] = load_preferences(args.data)
    encoder = ConversationEncoder(base.folder, args.prompt_format)
    scored: list[tuple[Scored, Scored]] = []
    for pair in pairs:
        chosen = _fit(encoder.encode_completion(pair.prompt, pair.chosen), args.max_seq_len, "chosen answer")
        rejected = _fit(encoder.encode_completion(pair.prompt, pair.rejected), args.max_seq_len, "rejected answer")
        scored.append((Scored(chosen), Scored(rejected)))

    def prepare(peft_model: Any, where: torch.device) -> None:
        score_references(peft_model, [s for pair in scored for s in pair], encoder.pad_id, where)

    def epoch_batches(epoch: int) -> list[list[tuple[Scored, Scored]]]:
        return _chunks(scored, args.micro_batch_size, args.seed + 1000 * epoch)

    objective = DPOObjective(args.beta, encoder.pad_id)
    return run_round(
        "dpo", args, base, _data(args.data, len(pairs), "dpo"), objective, epoch_batches,
        len(epoch_batches(0)), run_dir, device, resume, on_step, prepare,
    )  # fmt: skip


def train_kto(
    args: PreferenceArguments,
    base: BaseModel,
    run_dir: Path,
    device: str = "auto",
    resume: bool = False,
    on_step: StepCallback | None = None,
) -> RoundResult:
    rows: list[KTOExample] = load_kto(args.data)
    if len({row.desirable for row in rows}) < 2:
        raise DomainbotError(
            f"{args.data.name} holds only {'desirable' if rows[0].desirable else 'undesirable'} answers; "
            "KTO needs both kinds."
        )
    encoder = ConversationEncoder(base.folder, args.prompt_format)
    items: list[KTOItem] = []
    for i, row in enumerate(rows):
        answer = _fit(encoder.encode_completion(row.prompt, row.completion), args.max_seq_len, "answer")
        other = rows[(i + 1) % len(rows)].completion
        mismatched = _fit(encoder.encode_completion(row.prompt, other), args.max_seq_len, "answer")
        items.append(KTOItem(Scored(answer), mismatched, row.desirable))

    def prepare(peft_model: Any, where: torch.device) -> None:
        score_references(peft_model, [item.answer for item in items], encoder.pad_id, where)

    def epoch_batches(epoch: int) -> list[list[KTOItem]]:
        return _chunks(items, args.micro_batch_size, args.seed + 1000 * epoch)

    objective = KTOObjective(args.beta, encoder.pad_id)
    return run_round(
        "kto", args, base, _data(args.data, len(rows), "kto"), objective, epoch_batches,
        len(epoch_batches(0)), run_dir, device, resume, on_step, prepare,
    )  # fmt: skip
