"""The loop, end to end on the shipped model: the bot answers wrongly, people correct it, a LoRA round learns the
corrections, the evaluation shows it, and the running bot answers with them — without a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import load_settings
from bot.model import embedded
from bot.model.swap import SwappableBackend
from bot.pipeline import Pipeline
from tests.integration.conftest import use_models
from training.cycle import run_cycle
from training.registry import AdapterRegistry
from training.rounds import BaseModel

pytestmark = pytest.mark.integration

# Facts the base model cannot know, and the corrections users send for its answers.
CASES = [
    ("What is the support phone number of Acme Corp?", "The support line of Acme Corp is 555-0142, open 9 to 5."),
    ("Who founded the Zorblat Institute?", "The Zorblat Institute was founded by Dr. Mira Okonkwo in 1987."),
    ("What colour is the domainbot logo?", "The domainbot logo is teal with a white speech bubble."),
]


def test_corrections_become_an_adapter_the_running_bot_answers_with(
    prepared_models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_models(monkeypatch, prepared_models)
    monkeypatch.setenv("DOMAINBOT_MAX_NEW_TOKENS", "48")
    # Short prompts: the training rows hold the prompt the bot built, and its length is what a step costs on two
    # cores (one passage and no few-shot examples: 15 steps in about a minute instead of several).
    monkeypatch.setenv("DOMAINBOT_RETRIEVAL_K", "1")
    monkeypatch.setenv("DOMAINBOT_FEWSHOT_K", "0")
    settings = load_settings()
    # The bot as `domainbot chat` or the Telegram bot runs it, on the base model.
    bot = Pipeline.from_settings(settings)
    assert isinstance(bot.backend, SwappableBackend) and bot.backend.adapter is None
    for i, (question, correction) in enumerate(CASES):
        answer = bot.answer(question, f"before-{i}", user_id="7", channel="telegram")
        assert answer.interaction_id is not None and correction not in answer.raw_text
        bot.feedback.rate(answer.interaction_id, -1, rater_id="7")
        bot.feedback.correct(answer.interaction_id, correction, rater_id="7")

    base = BaseModel(prepared_models / embedded.NAME, embedded.NAME)
    outcome = run_cycle(settings, base, {"max_steps": 15}, max_new_tokens=48)

    assert outcome.export.rows == len(CASES)
    ours, theirs = outcome.scores[outcome.adapter], outcome.scores["base"]
    # The loss on the corrected answers falls by at least 30 %...
    assert ours["loss"] <= 0.7 * theirs["loss"], outcome.reason
    # ...and the greedy answers to those questions are now the corrections.
    assert theirs["contains"] == 0.0
    assert ours["contains"] == 1.0, outcome.reason
    assert outcome.comparison["wins"] == len(CASES)
    assert outcome.activated
    registry = AdapterRegistry.in_data_dir(settings.data_dir)
    assert registry.active() == outcome.adapter
    card = registry.card(outcome.adapter)
    assert card.data["sha256"] == outcome.export.sha256 and card.metrics["eval"]["contains"] == 1.0

    # The running bot switches without a restart: it polls the registry and loads the adapter in the background;
    # refresh() waits for that here instead of sleeping. Its answers, through the whole pipeline, now carry the
    # corrections, and each is logged with the adapter that wrote it.
    bot.backend.refresh()
    for i, (question, correction) in enumerate(CASES):
        answer = bot.answer(question, f"after-{i}", user_id="7", channel="telegram")
        assert correction in answer.raw_text and answer.adapter == outcome.adapter
        assert bot.feedback.get(str(answer.interaction_id)).adapter == outcome.adapter
    bot.backend.close()
