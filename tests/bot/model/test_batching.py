"""Continuous batching: concurrent answers equal one-at-a-time answers, and one caller cannot hurt the others."""

from __future__ import annotations

import gc
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

from bot.errors import DomainbotError
from bot.model import backend as backend_module
from bot.model import batching
from bot.model.backend import GenerationParams, GenerationResult, Message, TransformersBackend
from bot.model.batching import BackendBusyError, BatchGenerationError, BatchingBackend, supports_batching
from bot.model.loader import _load_folder
from tests.helpers import build_tiny_model

QUESTIONS = [
    "What is the capital of France?",
    "hi",
    "Numbers like 42, 3.14 and 2026 appear in answers too. " * 3,
    "서울은 한국의 수도입니다.",
    "domainbot answers questions about one domain, and learns from ratings.",
    "Paris",
]
# Greedy, greedy with a penalty, seeded sampling, a stop string, a short budget: each row keeps its own.
PARAMS = [
    GenerationParams(max_new_tokens=24),
    GenerationParams(max_new_tokens=24, repetition_penalty=1.3),
    GenerationParams(max_new_tokens=24, temperature=0.9, top_p=0.9, seed=5),
    GenerationParams(max_new_tokens=24, stop=("is",)),
    GenerationParams(max_new_tokens=3),
    GenerationParams(max_new_tokens=30),
]


def ask(question: str) -> list[Message]:
    return [{"role": "user", "content": question}]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Wider than the shared tiny model, so greedy answers vary from token to token.
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama-64"), hidden_size=64)


@pytest.fixture()
def inner(model_dir: Path) -> TransformersBackend:
    return TransformersBackend(_load_folder(model_dir, "tiny", torch.device("cpu"), torch.float32, True))


@dataclass
class Answer:
    text: str = ""
    result: GenerationResult = field(default_factory=GenerationResult)
    error: BaseException | None = None


def reference(inner: TransformersBackend, question: str, params: GenerationParams) -> tuple[Answer, list[int]]:
    """One request alone on the plain backend, with the token ids it chose."""
    chosen: list[int] = []
    real = backend_module.choose_next_token

    def recording(*args: Any) -> int:
        chosen.append(real(*args))
        return chosen[-1]

    backend_module.choose_next_token = recording  # type: ignore[assignment]
    try:
        answer = Answer()
        answer.text = "".join(inner.stream(ask(question), params, answer.result))
    finally:
        backend_module.choose_next_token = real
    return answer, chosen


def consume(backend: BatchingBackend, question: str, params: GenerationParams, answer: Answer, first: threading.Event):
    try:
        for piece in backend.stream(ask(question), params, answer.result):
            answer.text += piece
            first.set()
    except BaseException as exc:  # recorded for the test to look at
        answer.error = exc
    first.set()


def run_staggered(backend: BatchingBackend, jobs: list[tuple[str, GenerationParams]]) -> list[Answer]:
    """Start the first half of the jobs at once, the rest once an answer is streaming, so they join mid-batch."""
    answers = [Answer() for _ in jobs]
    started = threading.Event()
    threads = [
        threading.Thread(target=consume, args=(backend, q, p, a, started))
        for (q, p), a in zip(jobs, answers, strict=True)
    ]
    half = len(threads) // 2
    for thread in threads[:half]:
        thread.start()
    assert started.wait(10)
    for thread in threads[half:]:
        thread.start()
    for thread in threads:
        thread.join(30)
        assert not thread.is_alive()
    return answers


@pytest.fixture()
def recorded(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Token ids each batched row chose (by prompt), and the batch sizes of the decode steps."""
    record: dict[str, Any] = {"tokens": {}, "batch_sizes": []}
    accept, step = batching._Row.accept, BatchingBackend._step

    def recording_accept(row: batching._Row, token: int) -> None:
        record["tokens"].setdefault(tuple(row.request.prompt), []).append(token)
        accept(row, token)

    def recording_step(self: BatchingBackend, batch: batching._Batch) -> None:
        record["batch_sizes"].append(len(batch.rows))
        step(self, batch)

    monkeypatch.setattr(batching._Row, "accept", recording_accept)
    monkeypatch.setattr(BatchingBackend, "_step", recording_step)
    return record


def test_concurrent_answers_equal_one_at_a_time(inner: TransformersBackend, recorded: dict[str, Any]) -> None:
    # 12 requests through 8 slots; each prompt differs, so the recorded ids of each row can be told apart.
    jobs = [(q + suffix, p) for suffix in ("", " Why?") for q, p in zip(QUESTIONS, PARAMS, strict=True)]
    expected = [reference(inner, q, p) for q, p in jobs]
    backend = BatchingBackend(inner, max_batch=8)

    answers = run_staggered(backend, jobs)

    for (question, _), answer, (alone, alone_ids) in zip(jobs, answers, expected, strict=True):
        assert answer.error is None
        assert recorded["tokens"][tuple(inner.encode(ask(question)))][: len(alone_ids)] == alone_ids
        assert answer.text == alone.text
        assert (answer.result.new_tokens, answer.result.finish_reason) == (
            alone.result.new_tokens,
            alone.result.finish_reason,
        )
        assert answer.result.prompt_tokens == alone.result.prompt_tokens
        assert 0 < answer.result.timings["first_token"] <= answer.result.timings["generate"]
    assert {a.result.finish_reason for a in answers} >= {"length", "stop"}
    assert max(recorded["batch_sizes"]) > 1, "the requests were never decoded together"
    assert max(recorded["batch_sizes"]) <= 8


def test_a_request_that_waits_for_a_slot_still_matches(inner: TransformersBackend, recorded: dict[str, Any]) -> None:
    jobs = [(q, GenerationParams(max_new_tokens=16)) for q in QUESTIONS[:4]]
    expected = [reference(inner, q, p)[0].text for q, p in jobs]
    answers = run_staggered(BatchingBackend(inner, max_batch=2), jobs)
    assert [a.text for a in answers] == expected
    assert max(recorded["batch_sizes"]) == 2


class ForwardHook:
    """Wraps a model's forward: runs `before(input_ids)` first on every call (to fail or hold it) and counts calls."""

    def __init__(self, model: Any, before: Callable[[torch.Tensor], None]) -> None:
        self.real, self.before, self.calls = model.forward, before, 0
        model.forward = self

    def __call__(self, input_ids: torch.Tensor, **kwargs: Any) -> Any:
        self.calls += 1
        self.before(input_ids)
        return self.real(input_ids=input_ids, **kwargs)


def test_a_failing_prefill_fails_only_its_request(inner: TransformersBackend) -> None:
    bad = inner.encode(ask("Paris"))

    def refuse(input_ids: torch.Tensor) -> None:
        if input_ids[0].tolist() == bad:
            raise RuntimeError("out of memory (scripted)")

    ForwardHook(inner.loaded.model, refuse)
    backend = BatchingBackend(inner, max_batch=4)
    params = GenerationParams(max_new_tokens=12)
    answers = run_staggered(backend, [(QUESTIONS[0], params), ("Paris", params), (QUESTIONS[1], params)])
    assert isinstance(answers[1].error, RuntimeError)
    assert "scripted" in str(answers[1].error)
    assert answers[0].error is None and answers[2].error is None
    assert answers[0].result.new_tokens > 0 and answers[2].result.new_tokens > 0


def test_a_failing_step_fails_that_batch_and_the_loop_goes_on(inner: TransformersBackend) -> None:
    failures = iter([True])

    def fail_once_in_decode(input_ids: torch.Tensor) -> None:
        if input_ids.shape[1] == 1 and next(failures, False):
            raise RuntimeError("device lost (scripted)")

    ForwardHook(inner.loaded.model, fail_once_in_decode)
    backend = BatchingBackend(inner, max_batch=4)
    params = GenerationParams(max_new_tokens=12)
    failed = run_staggered(backend, [(QUESTIONS[0], params), (QUESTIONS[1], params)])
    assert any(isinstance(a.error, BatchGenerationError) for a in failed)
    error = next(a.error for a in failed if a.error is not None)
    assert "device lost (scripted)" in str(error) and isinstance(error, DomainbotError)

    later = "".join(backend.stream(ask(QUESTIONS[0]), params, GenerationResult()))
    assert later == reference(inner, QUESTIONS[0], params)[0].text


def open_stream(backend: BatchingBackend, question: str, params: GenerationParams) -> tuple[Iterator[str], str]:
    stream = backend.stream(ask(question), params, GenerationResult())
    return stream, next(stream)


def test_a_closed_stream_frees_its_slot_at_once(inner: TransformersBackend) -> None:
    def slow(input_ids: torch.Tensor) -> None:
        time.sleep(0.005)  # so a row left running would still be generating when the test looks

    hook = ForwardHook(inner.loaded.model, slow)
    backend = BatchingBackend(inner, max_batch=1)
    long = GenerationParams(max_new_tokens=200)
    stream, _ = open_stream(backend, "hi", long)
    stream.close()
    calls_at_close = hook.calls
    answer = "".join(backend.stream(ask("Paris"), GenerationParams(max_new_tokens=5), GenerationResult()))
    assert answer
    # The closed row was dropped within a step or two, not run to its 200 tokens.
    assert hook.calls - calls_at_close <= 5 + 1 + 3


def test_a_stuck_reader_does_not_stall_the_others(inner: TransformersBackend) -> None:
    backend = BatchingBackend(inner, max_batch=2)
    stuck, _ = open_stream(backend, "hi", GenerationParams(max_new_tokens=150))  # read once, then left alone
    answer, done = Answer(), threading.Event()
    reader = threading.Thread(
        target=consume, args=(backend, "Paris", GenerationParams(max_new_tokens=20), answer, done)
    )
    reader.start()
    reader.join(10)  # in a thread: a loop that waited for the stuck reader would hang here, not the test run
    assert not reader.is_alive(), "the stuck reader stalled the batch"
    assert answer.error is None and answer.result.finish_reason in ("length", "eos")
    stuck.close()


def test_a_full_wait_queue_refuses_at_once(inner: TransformersBackend) -> None:
    gate, held = threading.Event(), threading.Event()

    def hold(input_ids: torch.Tensor) -> None:
        held.set()
        gate.wait(10)

    ForwardHook(inner.loaded.model, hold)
    backend = BatchingBackend(inner, max_batch=1, max_waiting=1)
    params = GenerationParams(max_new_tokens=4)
    answers = [Answer(), Answer()]
    first = threading.Event()
    holder = threading.Thread(target=consume, args=(backend, "hi", params, answers[0], first))
    holder.start()
    # The loop took the first request and waits in forward, so nothing takes the next one off the queue.
    assert held.wait(10), "the first request never reached the model"
    deadline = time.monotonic() + 10
    waiter = threading.Thread(target=consume, args=(backend, "Paris", params, answers[1], threading.Event()))
    waiter.start()
    while backend._inbox.empty() and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(BackendBusyError, match="1 requests are already waiting"):
        next(backend.stream(ask("hello"), params, GenerationResult()))
    gate.set()
    holder.join(10)
    waiter.join(10)
    assert [a.error for a in answers] == [None, None]
    assert all(a.text for a in answers)


def test_close_ends_the_loop_and_refuses_new_requests(inner: TransformersBackend) -> None:
    backend = BatchingBackend(inner, max_batch=2)
    assert "".join(backend.stream(ask("hi"), GenerationParams(max_new_tokens=3), GenerationResult()))
    thread = backend._thread
    assert thread is not None
    backend.close()
    thread.join(5)
    assert not thread.is_alive()
    with pytest.raises(DomainbotError, match="closed"):
        next(backend.stream(ask("hi"), GenerationParams(max_new_tokens=3), GenerationResult()))


def test_close_ends_answers_in_flight_with_an_error(inner: TransformersBackend) -> None:
    ForwardHook(inner.loaded.model, lambda input_ids: time.sleep(0.005))
    backend = BatchingBackend(inner, max_batch=2)
    stream, _ = open_stream(backend, "hi", GenerationParams(max_new_tokens=200))
    started = time.perf_counter()
    backend.close()
    assert time.perf_counter() - started < 2  # it stopped at the next step, not after 200 tokens
    assert backend._thread is not None and not backend._thread.is_alive()
    with pytest.raises(DomainbotError, match="closed while the answer was generated"):
        list(stream)


def test_a_discarded_backend_is_freed_and_its_thread_ends(inner: TransformersBackend) -> None:
    backend = BatchingBackend(inner, max_batch=2)
    assert "".join(backend.stream(ask("hi"), GenerationParams(max_new_tokens=3), GenerationResult()))
    thread, ref = backend._thread, weakref.ref(backend)
    assert thread is not None
    del backend
    # The loop lets go of its strong reference once it is idle, a moment after the answer's last piece.
    deadline = time.monotonic() + 5
    while gc.collect() is not None and ref() is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ref() is None
    thread.join(5)
    assert not thread.is_alive()


def test_only_plain_growing_caches_are_batched(inner: TransformersBackend) -> None:
    from transformers import MistralConfig, MistralForCausalLM

    assert supports_batching(inner.loaded.model)
    sliding = MistralConfig(
        vocab_size=32,
        hidden_size=16,
        intermediate_size=32,
        num_attention_heads=4,
        num_hidden_layers=1,
        sliding_window=8,
    )
    assert not supports_batching(MistralForCausalLM(sliding))


@pytest.mark.parametrize(("max_batch", "wrapped"), [(8, True), (1, False)])
def test_the_factory_batches_the_transformers_backend(tiny_settings: Any, max_batch: int, wrapped: bool) -> None:
    from bot.model.factory import open_backend

    settings = tiny_settings.model_copy(update={"backend": "transformers", "max_batch": max_batch})
    backend = open_backend(settings).backend
    assert isinstance(backend, BatchingBackend) is wrapped
    assert backend.name == "transformers"
    assert isinstance(backend.loaded.model, torch.nn.Module)  # type: ignore[attr-defined]
    params = GenerationParams(max_new_tokens=6)
    alone = "".join(TransformersBackend(backend.loaded).stream(ask("hi"), params, GenerationResult()))  # type: ignore[attr-defined]
    assert "".join(backend.stream(ask("hi"), params, GenerationResult())) == alone


def test_the_native_backend_is_left_as_it_is(tiny_settings: Any) -> None:
    from bot.model.factory import open_backend

    assert open_backend(tiny_settings.model_copy(update={"max_batch": 8})).backend.name == "native"


def test_max_batch_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.config import load_settings

    assert load_settings().max_batch == 8
    monkeypatch.setenv("DOMAINBOT_MAX_BATCH", "0")
    with pytest.raises(DomainbotError, match="DOMAINBOT_MAX_BATCH"):
        load_settings()
