"""The loop, end to end on the shipped model: wrong answers are corrected, a LoRA round learns the corrections,
the evaluation shows it, and the adapter becomes the one the bot serves."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import load_settings
from bot.feedback import FeedbackStore, InteractionRecord
from bot.model import embedded
from bot.model.backend import Backend, GenerationParams, GenerationResult
from bot.model.factory import open_backend
from bot.model.swap import SwappableBackend
from tests.integration.conftest import use_models
from training.cycle import run_cycle
from training.registry import AdapterRegistry
from training.rounds import BaseModel

pytestmark = pytest.mark.integration

# Facts the base model cannot know, answered wrongly, then corrected by a user.
CASES = [
    (
        "What is the support phone number of Acme Corp?",
        "I'm sorry, I don't have that information.",
        "The support line of Acme Corp is 555-0142, open 9 to 5.",
    ),
    (
        "Who founded the Zorblat Institute?",
        "The Zorblat Institute was founded by Albert Einstein.",
        "The Zorblat Institute was founded by Dr. Mira Okonkwo in 1987.",
    ),
    (
        "What colour is the domainbot logo?",
        "The domainbot logo is red.",
        "The domainbot logo is teal with a white speech bubble.",
    ),
]


def test_corrections_become_an_adapter_that_answers_with_them(
    prepared_models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_models(monkeypatch, prepared_models)
    settings = load_settings()
    store = FeedbackStore.in_data_dir(settings.data_dir)
    for question, wrong, right in CASES:
        interaction = store.log(
            InteractionRecord(question=question, answer=wrong, model=embedded.NAME, user_id="7", channel="telegram")
        )
        store.rate(interaction, -1, rater_id="7")
        store.correct(interaction, right, rater_id="7")
    store.close()

    # A bot already running on the base model, as `domainbot chat` or the Telegram bot runs it.
    running = open_backend(settings, follow_registry=True).backend
    assert isinstance(running, SwappableBackend) and running.adapter is None
    question, _, correction = CASES[0]
    assert correction not in greedy(running, question)

    base = BaseModel(prepared_models / embedded.NAME, embedded.NAME)
    overrides = {"max_steps": 12, "learning_rate": 1e-3, "max_seq_len": 256}
    outcome = run_cycle(settings, base, overrides, max_new_tokens=40)

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

    # The running bot switches to the new adapter without a restart: it polls the registry and loads the new
    # adapter in the background; refresh() waits for that here instead of sleeping.
    running.refresh()
    assert correction in greedy(running, question)
    assert running.adapter == outcome.adapter
    running.close()


def greedy(backend: Backend, question: str) -> str:
    params = GenerationParams(max_new_tokens=40, temperature=0.0)
    return "".join(backend.stream([{"role": "user", "content": question}], params, GenerationResult()))
