"""Two bot workers in webhook mode over one data folder, as behind a load balancer: any worker may receive a
user's next update, so what a conversation waits for (a correction, /sources) must live in the shared feedback
store."""

from __future__ import annotations

import secrets
import socket
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.telegram import texts
from guardrails import Guardrails
from tests.bot.telegram.conftest import ALICE, RunningBot, fake_token, running_bot
from tests.front_end_pipeline import WARRANTY
from tests.telegram_fake import FakeBotApi, fake_bot_api

SUPPORTED = "Grinders carry a two-year warranty from purchase [1]."
QUESTION = "How long is the grinder warranty?"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture()
def workers(tmp_path: Path, guard: Guardrails) -> Iterator[tuple[FakeBotApi, list[tuple[RunningBot, str]]]]:
    """Two workers on one fake Bot API and one data folder; each listens on its own port."""
    secret = secrets.token_urlsafe(16)
    with fake_bot_api(fake_token()) as fake, ExitStack() as stack:
        started = []
        for _ in range(2):
            port = free_port()
            url = f"http://127.0.0.1:{port}/telegram-updates"
            options = {"webhook_listen": "127.0.0.1", "webhook_port": port, "webhook_secret": SecretStr(secret)}
            worker = stack.enter_context(
                running_bot(tmp_path, guard, shared_api=fake, mode="webhook", webhook_url=url, **options)
            )
            started.append((worker, url))
        yield fake, started


def route_to(fake: FakeBotApi, url: str) -> None:
    """The load balancer's choice: the worker the next update goes to."""
    with fake.lock:
        fake.webhook["url"] = url


def test_a_correction_asked_for_on_one_worker_is_taken_by_another(
    workers: tuple[FakeBotApi, list[tuple[RunningBot, str]]],
) -> None:
    fake, [(first, first_url), (second, second_url)] = workers
    alice = fake.user(ALICE)
    first.model.enqueue([SUPPORTED])
    route_to(fake, first_url)
    answer = first.ask(alice, QUESTION)
    fix = answer["reply_markup"]["inline_keyboard"][0][2]["callback_data"]

    route_to(fake, second_url)
    fake.press(alice, answer, fix)
    prompt = second.reply_after(answer, "the request for a correction")
    assert "what should the answer have been" in prompt["text"]

    route_to(fake, first_url)
    reply = fake.send_text(alice, "Three years from the date of purchase.", reply_to=prompt)
    assert first.reply_after(reply, "the acknowledgement")["text"] == texts.CORRECTION_SAVED
    (correction,) = second.feedback.get(fix.split(":")[1]).corrections
    assert correction.text == "Three years from the date of purchase." and correction.rater_id == str(ALICE)
    # Neither worker took the correction for a question.
    assert len(first.model.calls) == 1 and second.model.calls == []

    # Taken once: the next message is a question again, on whichever worker it lands.
    second.model.enqueue([SUPPORTED])
    route_to(fake, second_url)
    assert "two-year" in second.ask(alice, QUESTION)["text"]
    assert second.feedback.stats()["corrections"] == 1


def test_a_cancel_on_one_worker_stops_the_correction_on_the_other(
    workers: tuple[FakeBotApi, list[tuple[RunningBot, str]]],
) -> None:
    fake, [(first, first_url), (second, second_url)] = workers
    alice = fake.user(ALICE)
    first.model.enqueue([SUPPORTED, SUPPORTED])
    route_to(fake, first_url)
    answer = first.ask(alice, QUESTION)
    fake.press(alice, answer, answer["reply_markup"]["inline_keyboard"][0][2]["callback_data"])
    first.reply_after(answer, "the request for a correction")

    route_to(fake, second_url)
    cancel = fake.send_text(alice, "/cancel")
    assert second.reply_after(cancel, "the cancellation")["text"] == texts.CANCELLED
    route_to(fake, first_url)
    assert "two-year" in first.ask(alice, QUESTION)["text"]
    assert first.feedback.stats()["corrections"] == 0


def test_sources_of_an_answer_from_one_worker_are_shown_by_another(
    workers: tuple[FakeBotApi, list[tuple[RunningBot, str]]],
) -> None:
    fake, [(first, first_url), (second, second_url)] = workers
    alice = fake.user(ALICE)
    route_to(fake, second_url)
    asked = fake.send_text(alice, "/sources")
    assert second.reply_after(asked, "the reply to /sources")["text"] == texts.NO_ANSWER_YET
    first.model.enqueue([SUPPORTED])
    route_to(fake, first_url)
    first.ask(alice, QUESTION)
    route_to(fake, second_url)
    asked = fake.send_text(alice, "/sources")
    shown = second.reply_after(asked, "the passages")["text"]
    assert "[1]" in shown and "warranty.md" in shown and WARRANTY in shown
    # /reset on the first worker clears it for every worker.
    route_to(fake, first_url)
    first.reply_after(fake.send_text(alice, "/reset"), "the reset")
    route_to(fake, second_url)
    asked = fake.send_text(alice, "/sources")
    assert second.reply_after(asked, "the reply after /reset")["text"] == texts.NO_ANSWER_YET
