"""Evaluation figures: answer match, per-example wins, and the answer loss under a model."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

from bot.model.backend import Message
from tests.training.conftest import QA, conversation
from training.encoding import ConversationEncoder
from training.evaluate import (
    Evaluated,
    ExampleScore,
    ModelScore,
    answer_loss,
    compare,
    normalise,
    plot_report,
    report,
    score_model,
    token_f1,
)


@pytest.mark.parametrize(
    ("prediction", "reference", "f1"),
    [
        ("Paris.", "paris", 1.0),
        ("It is Paris", "Paris", 0.5),
        ("서울은 한국의 수도입니다.", "서울은 한국의 수도입니다", 1.0),
        ("London", "Paris", 0.0),
        ("", "", 1.0),
        ("", "Paris", 0.0),
    ],
)
def test_token_f1(prediction: str, reference: str, f1: float) -> None:
    assert token_f1(prediction, reference) == pytest.approx(f1)


def test_normalise_folds_case_width_and_punctuation() -> None:
    assert normalise("  The ＡＮＳＷＥＲ: 42!! ") == "the answer 42"


def score(label: str, f1s: Sequence[float], losses: Sequence[float]) -> ModelScore:
    examples = [ExampleScore("q", "r", "a", loss, f1 == 1.0, f1 > 0, f1) for f1, loss in zip(f1s, losses, strict=True)]
    return ModelScore(label, examples)


def test_wins_go_to_higher_f1_then_lower_loss() -> None:
    candidate = score("new", [1.0, 0.0, 0.5, 0.5], [0.1, 0.1, 0.2, 0.3])
    baseline = score("base", [0.0, 1.0, 0.5, 0.5], [0.1, 0.1, 0.4, 0.3])
    assert compare(candidate, baseline) == {"wins": 2, "losses": 1, "ties": 1}


def test_scores_a_model_and_plots_the_report(tiny_model: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    encoder = ConversationEncoder(tiny_model)
    examples = [conversation(q, a) for q, a in QA]
    answers = {q: a for q, a in QA}

    def oracle(prompt: Sequence[Message]) -> str:
        return answers[prompt[-1]["content"]]

    perfect = score_model(Evaluated("oracle", model, torch.device("cpu"), oracle), encoder, examples)
    silent = score_model(Evaluated("silent", model, torch.device("cpu"), lambda _: ""), encoder, examples)
    assert perfect.summary()["exact"] == 1.0 and silent.summary()["exact"] == 0.0
    # The loss is the model's on the reference answer, whatever it generated: the same for both.
    assert perfect.summary()["loss"] == silent.summary()["loss"] > 0
    result = report(perfect, silent)
    assert result["comparison"] == {"wins": len(QA), "losses": 0, "ties": 0}
    png = plot_report(result, tmp_path / "eval.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_answer_loss_covers_only_the_last_answer(tiny_model: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    encoder = ConversationEncoder(tiny_model)
    single = conversation(*QA[1])
    longer = conversation(*QA[0])
    longer.messages += single.messages
    alone = answer_loss(model, encoder, single, torch.device("cpu"))
    in_context = answer_loss(model, encoder, longer, torch.device("cpu"))
    first_only = answer_loss(model, encoder, conversation(*QA[0]), torch.device("cpu"))
    assert alone > 0 and in_context > 0
    assert in_context != pytest.approx(first_only)  # the earlier answer is context, not scored
