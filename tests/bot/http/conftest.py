"""A real uvicorn server on 127.0.0.1 per test, over the real pipeline with a scripted model.

The pipeline has rule-only guardrails, a hash embedder and a knowledge base in the test's folder; clients
talk to it over HTTP with httpx (and the openai client in the OpenAI-compatible tests).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from pydantic import SecretStr

from bot.http import HttpConfig, create_app
from bot.model.backend import GenerationParams, GenerationResult, Message
from bot.pipeline import Pipeline
from guardrails import Guardrails
from tests.fakes import ScriptedBackend
from tests.front_end_pipeline import make_pipeline


class Model(ScriptedBackend):
    """The scripted model; with nothing queued it echoes the question. It can hold answers at a barrier
    (to prove they run at once), take its time per word, fail, and it records streams that were closed early."""

    def __init__(self) -> None:
        super().__init__(window=16384)
        self.delay = 0.0
        self.failures = 0
        self.barrier: threading.Barrier | None = None
        self.closed_early = threading.Event()
        self.pieces_sent = 0
        self.lock = threading.Lock()

    def stream(self, messages: Sequence[Message], params: GenerationParams, result: GenerationResult) -> Iterator[str]:
        if self.barrier is not None:
            self.barrier.wait(10)
        if self.failures:
            self.failures -= 1
            raise RuntimeError("the model broke at /opt/secret/weights")
        with self.lock:
            if not self.replies:
                self.replies.append(f"Echo: {messages[-1]['content'].splitlines()[-1]}")
        finished = False
        try:
            for piece in super().stream(messages, params, result):
                time.sleep(self.delay)
                with self.lock:
                    self.pieces_sent += 1
                yield piece
            finished = True
        finally:
            if not finished:
                self.closed_early.set()


@pytest.fixture(scope="session")
def guard() -> Guardrails:
    return Guardrails.load(embedder=None)




@dataclass
class Server:
    url: str
    model: Model
    pipeline: Pipeline
    config: HttpConfig

    def client(self, key: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=20, **kwargs)


@contextmanager
def running_server(tmp_path: Path, guard: Guardrails, **overrides: Any) -> Iterator[Server]:
    data_dir = tmp_path / "data"
    model = Model()
    pipeline = make_pipeline(data_dir, model, guard, 400)
    config = replace(HttpConfig(uploads_dir=data_dir / "http-uploads", workers=4), **overrides)
    app = create_app(pipeline, config)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="http-under-test", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.01)
        yield Server(f"http://127.0.0.1:{port}", model, pipeline, config)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        if pipeline.knowledge is not None:
            pipeline.knowledge.close()
    assert not thread.is_alive(), "the server did not stop"


@pytest.fixture()
def server(tmp_path: Path, guard: Guardrails) -> Iterator[Server]:
    with running_server(tmp_path, guard) as running:
        yield running


@pytest.fixture()
def make_server(tmp_path: Path, guard: Guardrails) -> Callable[..., Any]:
    """A server with settings of the test's own: `with make_server(api_key=SecretStr("k")) as server: ...`."""
    return lambda **overrides: running_server(tmp_path, guard, **overrides)


def keyed(**keys: str) -> dict[str, SecretStr]:
    return {name: SecretStr(value) for name, value in keys.items()}


def sse_events(lines: Iterator[str]) -> Iterator[tuple[str, str]]:
    """(event name, data) of each server-sent event; the name is "message" when none is given."""
    name, data = "message", []
    for line in lines:
        if not line:
            if data:
                yield name, "\n".join(data)
            name, data = "message", []
        elif line.startswith("event: "):
            name = line[len("event: ") :]
        elif line.startswith("data: "):
            data.append(line[len("data: ") :])
