"""The real Application against the fake Bot API server: a running bot per test, on its own thread.

Its pipeline is the real one with a scripted model, rule-only guardrails, a hash embedder and a knowledge base
in the test's folder, built on the engine thread like the real bot's.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from bot.feedback import FeedbackStore
from bot.model.backend import GenerationParams, GenerationResult, Message
from bot.pipeline import Pipeline
from bot.telegram import BotCore, Engine, TelegramConfig, build_application, run_bot
from guardrails import Guardrails
from tests.fakes import ScriptedBackend
from tests.front_end_pipeline import make_pipeline
from tests.telegram_fake import FakeBotApi, fake_bot_api

ADMIN = 1001
ALICE = 1002
BOB = 1003



def fake_token() -> str:
    """A token-shaped string made up at run time, never a real bot's."""
    return f"{secrets.randbelow(10**9) + 10**9}:{secrets.token_urlsafe(26)}"


class Model(ScriptedBackend):
    """The scripted model, plus what the bot tests need: a gate that holds an answer back, and failures."""

    def __init__(self) -> None:
        super().__init__(window=16384)  # room for long answers beside the passages
        self.hold: threading.Event | None = None
        self.held = 0  # answers waiting at the gate right now
        self.failures = 0
        self.delay = 0.0
        self._count = threading.Lock()

    def stream(self, messages: Sequence[Message], params: GenerationParams, result: GenerationResult) -> Iterator[str]:
        if self.hold is not None:
            with self._count:
                self.held += 1
            self.hold.wait(10)
            with self._count:
                self.held -= 1
        if self.failures:
            self.failures -= 1
            raise RuntimeError("the model broke")
        for piece in super().stream(messages, params, result):
            time.sleep(self.delay)  # a model that takes its time, one word after another
            yield piece


@pytest.fixture(scope="session")
def guard() -> Guardrails:
    return Guardrails.load(embedder=None)


@dataclass
class RunningBot:
    fake: FakeBotApi
    model: Model
    core: BotCore
    config: TelegramConfig
    errors: list[BaseException] = field(default_factory=list)

    @property
    def pipeline(self) -> Pipeline:
        return self.core.pipeline

    @property
    def feedback(self) -> FeedbackStore:
        return self.core.feedback

    def on_engine(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on the engine thread, where the knowledge base lives."""
        return self.core.engine.call(fn)

    def ask(self, user: dict[str, Any], text: str, chat: dict[str, Any] | None = None, **kwargs: Any) -> dict:
        """Send `text` and wait for the bot's (last piece of its) answer: the message with the rating keyboard."""
        question = self.fake.send_text(user, text, chat, **kwargs)
        chat_id = question["chat"]["id"]
        return self.fake.wait_for(
            lambda: next(
                (
                    m
                    for m in self.fake.bot_messages(chat_id)
                    if m["message_id"] > question["message_id"]
                    and "reply_markup" in m
                    and "inline_keyboard" in m["reply_markup"]
                ),
                None,
            ),
            what=f"an answer to {text!r}",
        )

    def reply_after(self, message: dict[str, Any], what: str = "a reply") -> dict[str, Any]:
        """Wait for the first bot message in the chat after `message`."""
        chat_id = message["chat"]["id"]
        return self.fake.wait_for(
            lambda: next((m for m in self.fake.bot_messages(chat_id) if m["message_id"] > message["message_id"]), None),
            what=what,
        )




@contextmanager
def running_bot(
    tmp_path: Path, guard: Guardrails, shared_api: FakeBotApi | None = None, **overrides: Any
) -> Iterator[RunningBot]:
    """A bot on its own fake Bot API, or on `shared_api` beside other bots (workers behind one webhook URL)."""
    token = shared_api.token if shared_api is not None else fake_token()
    with nullcontext(shared_api) if shared_api is not None else fake_bot_api(token) as fake:
        config = TelegramConfig(
            token=SecretStr(token),
            uploads_dir=tmp_path / "data" / "telegram-uploads",
            api_url=fake.url,
            poll_timeout=1.0,
            admins=frozenset({ADMIN}),
            allowed_users=frozenset({ADMIN, ALICE, BOB}),
        )
        config = replace(config, **overrides)
        model = Model()
        engine = Engine(config.workers)
        pipeline = engine.call(make_pipeline, tmp_path / "data", model, guard, 4000)
        core = BotCore(config, engine, pipeline)
        app = build_application(core)
        bot = RunningBot(fake, model, core, config)
        loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                run_bot(app, config, handle_signals=False)
            except BaseException as exc:  # surfaces in the test, not as a silent thread death
                bot.errors.append(exc)

        thread = threading.Thread(target=run, name="bot-under-test", daemon=True)
        thread.start()
        try:
            fake.wait_for(lambda: fake.attempts("getUpdates") or fake.webhook or bot.errors, what="the bot to start")
            assert not bot.errors, bot.errors
            yield bot
        finally:
            if thread.is_alive() and not loop.is_closed():
                loop.call_soon_threadsafe(app.stop_running)
            thread.join(15)
            engine.call(lambda: pipeline.knowledge.close() if pipeline.knowledge else None)
            engine.close()
        assert not thread.is_alive(), "the bot did not stop"
        assert not bot.errors, bot.errors


@pytest.fixture()
def bot(tmp_path: Path, guard: Guardrails) -> Iterator[RunningBot]:
    with running_bot(tmp_path, guard) as running:
        yield running


@pytest.fixture()
def make_bot(tmp_path: Path, guard: Guardrails) -> Callable[..., Any]:
    """A bot with settings of the test's own: `with make_bot(rate_limit=2) as bot: ...`."""
    return lambda **overrides: running_bot(tmp_path, guard, **overrides)
