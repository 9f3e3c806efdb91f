"""Telegram under load: simulated chats through a local Bot API server, the real bot and the real pipeline.

Each simulated user sends a question, waits for the answer (the message with the rating keyboard), then sends
the next, all chats at once. The bot is the real python-telegram-bot Application talking HTTP to the Bot API
stand-in from the tests; the pipeline is the real one (rule guardrails, hash embedder, a small knowledge base,
feedback store) around a fake model that answers at once, or after `--model-seconds`. Prints messages lost
(must be 0), crashes (must be 0), throughput, and p50/p95 reply latency (question queued to answer received).

The Bot API stand-in and the simulated users run in a process of their own, so that their threads do not
compete with the bot for the interpreter lock and what is measured is the bot.

    python bench/telegram_load.py [--chats 100] [--messages 10] [--model-seconds 0] [--flood 0]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from pydantic import SecretStr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the Bot API stand-in lives with the tests

from bot.feedback import FeedbackStore  # noqa: E402
from bot.model.backend import GenerationParams, GenerationResult, Message  # noqa: E402
from bot.pipeline import Pipeline, PipelineOptions  # noqa: E402
from bot.prompting import load_examples, load_prompt_text  # noqa: E402
from bot.telegram import BotCore, Engine, TelegramConfig, build_application, run_bot  # noqa: E402
from bot.telegram.texts import SOMETHING_WENT_WRONG  # noqa: E402
from guardrails import Guardrails  # noqa: E402
from knowledge import HashEmbedder, KnowledgeBase, KnowledgeConfig  # noqa: E402
from tests.telegram_fake import ApiCall, FakeBotApi, fake_bot_api  # noqa: E402

ANSWER = "Grinders carry a two-year warranty from the date of purchase [1]."
QUESTIONS = ["How long is the grinder warranty?", "Does the warranty cover the burrs?", "Who pays for shipping?"]
FIRST_USER = 100_000


class FastModel:
    """A Backend that answers every question with one cited sentence, after `seconds` of "generation"."""

    name = "fast-fake"
    model_name = "fast-fake-model"
    adapter: str | None = None

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def count_tokens(self, messages: Sequence[Message]) -> int:
        return sum(len(m["content"].split()) + 4 for m in messages)

    def context_window(self) -> int:
        return 8192

    def stream(self, messages: Sequence[Message], params: GenerationParams, result: GenerationResult) -> Iterator[str]:
        time.sleep(self.seconds)
        for i, word in enumerate(ANSWER.split(" ")):
            result.new_tokens += 1
            yield word if i == 0 else " " + word
        result.finish_reason = "eos"


class Load:
    """The simulated users: each sends its next question when the answer to the last one arrives."""

    def __init__(self, fake: FakeBotApi, chats: int, messages: int) -> None:
        self.fake = fake
        self.messages = messages
        self.users = [fake.user(FIRST_USER + i, f"User{i}") for i in range(chats)]
        self.sent = dict.fromkeys((u["id"] for u in self.users), 0)
        self.asked_at: dict[int, float] = {}
        self.latencies: list[float] = []
        self.apologies = 0
        self.lock = threading.Lock()
        self.done = threading.Event()

    def start(self) -> None:
        for user in self.users:
            self._ask(user)

    def _ask(self, user: dict[str, Any]) -> None:
        with self.lock:
            self.sent[user["id"]] += 1
            self.asked_at[user["id"]] = time.monotonic()
            number = self.sent[user["id"]]
        self.fake.send_text(user, f"{QUESTIONS[number % len(QUESTIONS)]} (#{number})")

    def on_call(self, call: ApiCall, result: Any) -> None:
        if call.method != "sendMessage" or not isinstance(result, dict):
            return
        chat = result["chat"]["id"]
        if result.get("text") == SOMETHING_WENT_WRONG:
            with self.lock:
                self.apologies += 1
        if "inline_keyboard" not in result.get("reply_markup", {}) or chat not in self.sent:
            return
        with self.lock:
            self.latencies.append(time.monotonic() - self.asked_at.pop(chat))
            more = self.sent[chat] < self.messages
            if len(self.latencies) == len(self.users) * self.messages:
                self.done.set()
        if more:
            self._ask(self.users[chat - FIRST_USER])


class CountErrors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


def build_pipeline(folder: Path, model_seconds: float) -> Pipeline:
    embedder = HashEmbedder(256)
    docs = folder / "docs"
    docs.mkdir(parents=True)
    (docs / "warranty.md").write_text(f"# Warranty\n\n{ANSWER.removesuffix(' [1].')}.\n", encoding="utf-8")
    knowledge = KnowledgeBase(KnowledgeConfig(data_dir=folder), embedder)
    knowledge.add([docs])
    return Pipeline(
        backend=FastModel(model_seconds),
        params=GenerationParams(max_new_tokens=64),
        guard=Guardrails.load(embedder=None),
        feedback=FeedbackStore(folder / "feedback.sqlite3"),
        prompt_text=load_prompt_text(),
        examples=load_examples(),
        embed=embedder.embed,
        knowledge=knowledge,
        options=PipelineOptions(retrieval_k=2, fewshot_k=1),
    )


def run_server(token: str, chats: int, messages: int, flood: int, timeout: float, pipe: Connection) -> None:
    """The child process: the Bot API stand-in and the users. Sends its URL, then, when done, the results; stops
    when told."""
    with fake_bot_api(token) as fake:
        fake.flood_per_second = flood or None
        load = Load(fake, chats, messages)
        fake.listener = load.on_call
        pipe.send(fake.url)
        fake.wait_for(lambda: fake.attempts("getUpdates"), timeout=60, what="the bot to start")
        started = time.monotonic()
        load.start()
        load.done.wait(timeout)
        elapsed = time.monotonic() - started
        with load.lock:
            pipe.send(
                {
                    "latencies": list(load.latencies),
                    "apologies": load.apologies,
                    "elapsed": elapsed,
                    "calls": len(fake.calls),
                    "flood": sum(1 for c in fake.calls if c.status == 429),
                }
            )
        pipe.recv()  # the bot has stopped: its last calls were answered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chats", type=int, default=100)
    parser.add_argument("--messages", type=int, default=10, help="questions per chat")
    parser.add_argument("--model-seconds", type=float, default=0.0, help="time the fake model takes per answer")
    parser.add_argument("--flood", type=int, default=0, help="server answers 429 past this many sends per second")
    parser.add_argument("--timeout", type=float, default=300.0, help="give up waiting after this many seconds")
    args = parser.parse_args()

    errors = CountErrors()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger().addHandler(errors)
    token = "0:" + "bench" * 7  # a made-up token for the local server
    ours, theirs = multiprocessing.Pipe()
    server = multiprocessing.get_context("spawn").Process(
        target=run_server, args=(token, args.chats, args.messages, args.flood, args.timeout, theirs), daemon=True
    )
    server.start()
    url = ours.recv()
    with tempfile.TemporaryDirectory(prefix="domainbot-telegram-bench-") as folder:
        config = TelegramConfig(
            token=SecretStr(token),
            uploads_dir=Path(folder) / "uploads",
            api_url=url,
            poll_timeout=1.0,
            rate_limit=max(20, args.messages),
        )
        engine = Engine()
        pipeline = engine.call(build_pipeline, Path(folder), args.model_seconds)
        app = build_application(BotCore(config, engine, pipeline))
        loop = asyncio.new_event_loop()
        crashed: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                run_bot(app, config, handle_signals=False)
            except BaseException as exc:
                crashed.append(exc)

        thread = threading.Thread(target=run, name="bot")
        thread.start()
        results = ours.recv() if ours.poll(args.timeout + 90) else None
        loop.call_soon_threadsafe(app.stop_running)
        thread.join(30)
        engine.close()
        interactions = pipeline.feedback.stats()["interactions"]
    ours.send("stop")
    server.join(10)
    if results is None:
        raise SystemExit("the simulated users did not report back; the server process failed")

    expected = args.chats * args.messages
    latencies = sorted(results["latencies"])
    answered, elapsed = len(latencies), results["elapsed"]
    p95 = latencies[max(0, round(0.95 * len(latencies)) - 1)] if latencies else float("nan")
    crashes = len(crashed) + results["apologies"] + errors.count
    print(f"{args.chats} chats x {args.messages} messages, fake model {args.model_seconds * 1000:.0f} ms per answer")
    print(f"{'messages lost':>22}: {expected - answered} of {expected} (interactions logged: {interactions})")
    print(
        f"{'crashes':>22}: {crashes} (bot stopped: {len(crashed)}, 'something went wrong': {results['apologies']}, "
        f"errors logged: {errors.count})"
    )
    print(f"{'throughput':>22}: {answered / elapsed:.1f} answers/s over {elapsed:.1f} s")
    if latencies:
        print(
            f"{'reply latency':>22}: p50 {statistics.median(latencies) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, "
            f"max {latencies[-1] * 1000:.0f} ms"
        )
    print(f"{'Bot API calls':>22}: {results['calls']} ({results['flood']} answered 429 by flood control)")


if __name__ == "__main__":
    main()
