"""Evaluate a model (base or with an adapter) on held-out conversations, and compare two of them.

For each example the last assistant turn is the reference. Two kinds of figures:
- loss and perplexity on the reference answer's tokens, given the prompt (teacher forcing);
- the greedy answer to the prompt, scored against the reference: exact match and containment after
  normalising case, punctuation and spaces, and token F1 (SQuAD-style, on whitespace tokens).
Against a baseline, each example is a win, loss or tie by token F1 (then by the answer's loss).
"""

from __future__ import annotations

import math
import re
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from bot.config import Settings
from bot.errors import DomainbotError
from bot.model.backend import GenerationParams, GenerationResult, Message
from training.datasets import SFTExample
from training.encoding import IGNORE_INDEX, ConversationEncoder
from training.model import trained_logits
from training.packing import collate, unpacked

_PUNCT_OR_SPACE = re.compile(r"[\W_]+", re.UNICODE)


def normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    return _PUNCT_OR_SPACE.sub(" ", text).strip()


def token_f1(prediction: str, reference: str) -> float:
    predicted, expected = normalise(prediction).split(), normalise(reference).split()
    if not predicted or not expected:
        return float(predicted == expected)
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


@dataclass
class ExampleScore:
    prompt: str
    reference: str
    answer: str
    loss: float
    exact: bool
    contains: bool
    f1: float


@dataclass
class ModelScore:
    label: str
    examples: list[ExampleScore] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> dict[str, float]:
        n = len(self.examples)
        tokens_loss = [e.loss for e in self.examples]
        loss = sum(tokens_loss) / n
        return {
            "examples": n,
            "loss": round(loss, 4),
            "perplexity": round(math.exp(min(loss, 50.0)), 3),
            "exact": round(sum(e.exact for e in self.examples) / n, 4),
            "contains": round(sum(e.contains for e in self.examples) / n, 4),
            "token_f1": round(sum(e.f1 for e in self.examples) / n, 4),
        }


class Evaluated:
    """What `score_model` needs from a loaded model: its torch module, device, and a greedy answer function."""

    def __init__(
        self, label: str, model: Any, device: torch.device, answer: Callable[[Sequence[Message]], str]
    ) -> None:
        self.label, self.model, self.device, self.answer = label, model, device, answer


def split_example(example: SFTExample) -> tuple[list[Message], str]:
    messages: list[Message] = [{"role": m.role, "content": m.content} for m in example.messages]
    if not messages or messages[-1]["role"] != "assistant":
        raise DomainbotError("An evaluation example must end with the assistant's reference answer.")
    return messages[:-1], messages[-1]["content"]


def answer_loss(model: Any, encoder: ConversationEncoder, example: SFTExample, device: torch.device) -> float:
    """Mean cross-entropy per token of the last answer, given everything before it."""
    split_example(example)
    encoded = encoder.encode(example.messages)
    # Only the last answer counts: earlier assistant turns are context here.
    prompt_len = len(encoder.encode_prompt(example.messages[:-1]))
    encoded.labels[:prompt_len] = [IGNORE_INDEX] * prompt_len
    batch = collate(unpacked([encoded]), encoder.pad_id).to(device)
    with torch.no_grad():
        return float(F.cross_entropy(trained_logits(model, batch), batch.targets).item())


def score_model(evaluated: Evaluated, encoder: ConversationEncoder, examples: Sequence[SFTExample]) -> ModelScore:
    score = ModelScore(evaluated.label)
    started = time.perf_counter()
    evaluated.model.eval()
    for example in examples:
        prompt, reference = split_example(example)
        answer = evaluated.answer(prompt).strip()
        score.examples.append(
            ExampleScore(
                prompt=prompt[-1]["content"],
                reference=reference,
                answer=answer,
                loss=answer_loss(evaluated.model, encoder, example, evaluated.device),
                exact=normalise(answer) == normalise(reference),
                contains=bool(normalise(reference)) and normalise(reference) in normalise(answer),
                f1=token_f1(answer, reference),
            )
        )
    score.seconds = time.perf_counter() - started
    return score


def compare(candidate: ModelScore, baseline: ModelScore) -> dict[str, int]:
    """Per example: the higher token F1 wins; equal F1 goes to the lower loss on the reference."""
    wins = losses = ties = 0
    for ours, theirs in zip(candidate.examples, baseline.examples, strict=True):
        key_ours, key_theirs = (ours.f1, -ours.loss), (theirs.f1, -theirs.loss)
        if math.isclose(ours.f1, theirs.f1) and math.isclose(ours.loss, theirs.loss, rel_tol=1e-3):
            ties += 1
        elif key_ours > key_theirs:
            wins += 1
        else:
            losses += 1
    return {"wins": wins, "losses": losses, "ties": ties}


def greedy_answerer(backend: Any, max_new_tokens: int) -> Callable[[Sequence[Message]], str]:
    """Greedy answers from one of the bot's backends (exactly the decoding the bot does at temperature 0)."""
    params = GenerationParams(max_new_tokens=max_new_tokens, temperature=0.0)

    def answer(prompt: Sequence[Message]) -> str:
        return "".join(backend.stream(list(prompt), params, GenerationResult()))

    return answer


def report(candidate: ModelScore, baseline: ModelScore | None, examples_shown: int = 20) -> dict[str, Any]:
    out: dict[str, Any] = {"candidate": {"label": candidate.label, **candidate.summary()}}
    if baseline is not None:
        out["baseline"] = {"label": baseline.label, **baseline.summary()}
        out["comparison"] = compare(candidate, baseline)
    out["examples"] = [
        {
            "prompt": ours.prompt,
            "reference": ours.reference,
            "answer": ours.answer,
            "f1": round(ours.f1, 3),
            **({"baseline_answer": baseline.examples[i].answer} if baseline is not None else {}),
        }
        for i, ours in enumerate(candidate.examples[:examples_shown])
    ]
    return out


def plot_report(result: dict[str, Any], path: Path) -> Path:
    from training.plot import bar_plot

    metrics = ("exact", "contains", "token_f1")
    groups = {
        result[key]["label"]: {m: float(result[key][m]) for m in metrics}
        for key in ("candidate", "baseline")
        if key in result
    }
    return bar_plot(groups, path, "Answer match on the evaluation data")


def score_adapter(
    settings: Settings, label: str, adapter: Path | None, examples: Sequence[SFTExample], max_new_tokens: int
) -> ModelScore:
    """Score the configured model with `adapter` (None: the base model) as the bot would run it."""
    from bot.model.factory import open_backend
    from bot.model.loader import resolve_model

    if not examples:
        raise DomainbotError("The evaluation data holds no examples.")
    # The transformers backend: it holds the torch module the answer loss needs, with the adapter merged in.
    opened = open_backend(settings.model_copy(update={"adapter": adapter, "backend": "transformers"}))
    backend: Any = opened.backend
    encoder = ConversationEncoder(resolve_model(settings).folder, settings.prompt_format)
    answer = greedy_answerer(backend, max_new_tokens)
    return score_model(Evaluated(label, backend.loaded.model, backend.loaded.device, answer), encoder, examples)
