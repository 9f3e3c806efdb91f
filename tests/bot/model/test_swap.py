"""Hot swap: the bot follows the registry's active adapter without a restart; answers in flight finish on the
adapter they started with; a failed load keeps the old adapter. No sleeps: switches happen on explicit
`refresh()` calls, or on threads the test joins."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import torch

from bot.errors import DomainbotError
from bot.feedback import FeedbackStore
from bot.model.backend import Backend, GenerationParams, GenerationResult
from bot.model.factory import open_backend, pin_active_adapter
from bot.model.native import NativeLlamaBackend
from bot.model.swap import SwappableBackend, serving
from bot.pipeline import Pipeline
from bot.prompting import load_examples, load_prompt_text
from guardrails import Guardrails
from knowledge import HashEmbedder
from tests.fakes import ScriptedBackend
from tests.helpers import make_adapter
from training.registry import AdapterCard, AdapterRegistry, RegistryError

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]
PARAMS = GenerationParams(max_new_tokens=12)
# Adapters A and B change different layers, so the tiny model answers differently with each.
TARGETS = {"A": ["q_proj", "v_proj"], "B": ["k_proj", "o_proj", "down_proj"]}


@pytest.fixture(scope="module")
def adapter_files(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("adapters")
    for name, targets in TARGETS.items():
        make_adapter(tiny_model_dir, root / name, target_modules=targets)
    return {name: root / name for name in TARGETS}


def register(registry: AdapterRegistry, name: str, files: Path, base_model: str) -> None:
    created = datetime.now(UTC).isoformat()
    registry.add(files, AdapterCard(name=name, kind="sft", base_model=base_model, created_at=created))


@pytest.fixture()
def registry(tiny_settings: Any, tiny_model_dir: Path, adapter_files: dict[str, Path]) -> AdapterRegistry:
    registry = AdapterRegistry.in_data_dir(tiny_settings.data_dir)
    for name, files in adapter_files.items():
        register(registry, name, files, tiny_model_dir.name)
    return registry


@pytest.fixture()
def settings(tiny_settings: Any) -> Any:
    return tiny_settings.model_copy(update={"adapter_poll_seconds": 0.0})


@pytest.fixture(scope="module")
def expected(tiny_model_dir: Path, adapter_files: dict[str, Path]) -> dict[str | None, str]:
    """Each adapter's greedy answer, from a backend loaded with it directly."""

    def answer(adapter: Path | None) -> str:
        backend = NativeLlamaBackend(tiny_model_dir, tiny_model_dir.name, torch.device("cpu"), torch.float32, adapter)
        return "".join(backend.stream(MESSAGES, PARAMS, GenerationResult()))

    answers: dict[str | None, str] = {None: answer(None), **{n: answer(f) for n, f in adapter_files.items()}}
    assert len(set(answers.values())) == 3, answers  # otherwise the tests below could not tell them apart
    return answers


def generate(backend: Backend) -> str:
    return "".join(backend.stream(MESSAGES, PARAMS, GenerationResult()))


def test_a_running_answer_finishes_on_its_adapter_while_the_next_uses_the_new_one(
    settings: Any, registry: AdapterRegistry, expected: dict[str | None, str]
) -> None:
    registry.activate("A")
    backend = open_backend(settings, follow_registry=True).backend
    assert isinstance(backend, SwappableBackend)
    assert (backend.name, backend.adapter) == ("native", "A")

    running = backend.stream(MESSAGES, PARAMS, GenerationResult())
    first = next(running)
    registry.activate("B")
    assert backend.refresh() is True
    assert backend.adapter == "B"
    assert first + "".join(running) == expected["A"]
    assert generate(backend) == expected["B"]

    registry.activate(None)
    assert backend.refresh() is True
    assert (backend.adapter, generate(backend)) == (None, expected[None])
    assert backend.refresh() is False  # nothing changed since


def test_an_adapter_that_fails_to_load_keeps_the_old_one_with_one_warning(
    settings: Any,
    registry: AdapterRegistry,
    expected: dict[str | None, str],
    adapter_files: dict[str, Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry.activate("B")
    backend = open_backend(settings, follow_registry=True).backend
    assert isinstance(backend, SwappableBackend)
    # The trainer activates without naming the served model; the bot checks the card before loading.
    register(registry, "other", adapter_files["A"], "SomeOrg/Another-7B")
    registry.activate("other")
    with caplog.at_level(logging.WARNING, logger="bot.model.swap"):
        assert backend.refresh() is False
        assert backend.refresh() is False
        assert backend.check() is None  # the same registry state is not retried
    assert [r.getMessage() for r in caplog.records] == [
        "Adapter switch skipped, still answering with adapter B: adapter other could not be loaded: Adapter other "
        f"was trained on SomeOrg/Another-7B, but the configured model is {settings.model.rsplit('/', 1)[-1]}. "
        "Activate an adapter of this model, or set DOMAINBOT_MODEL to the adapter's base model."
    ]
    assert (backend.adapter, generate(backend)) == ("B", expected["B"])

    registry.activate("A")  # the next activation is tried
    assert backend.refresh() is True
    assert generate(backend) == expected["A"]


def test_the_active_adapter_is_used_at_start_unless_one_is_pinned(
    settings: Any, registry: AdapterRegistry, expected: dict[str | None, str]
) -> None:
    assert open_backend(settings, follow_registry=True).backend.adapter is None
    registry.activate("A")
    assert generate(open_backend(settings, follow_registry=True).backend) == expected["A"]
    # Evaluations and benchmarks open the base model unless given an adapter.
    assert open_backend(settings).backend.adapter is None

    pinned = open_backend(settings.model_copy(update={"adapter": Path("B")}), follow_registry=True).backend
    assert not isinstance(pinned, SwappableBackend)
    assert (pinned.adapter, generate(pinned)) == ("B", expected["B"])


def test_evaluations_pin_the_adapter_active_when_they_start(settings: Any, registry: AdapterRegistry) -> None:
    assert pin_active_adapter(settings) is settings  # nothing active: the base model, as configured
    registry.activate("A")
    pinned = open_backend(pin_active_adapter(settings), follow_registry=True).backend
    registry.activate("B")
    assert not isinstance(pinned, SwappableBackend) and pinned.adapter == "A"
    explicit = settings.model_copy(update={"adapter": Path("B")})
    assert pin_active_adapter(explicit) is explicit


@pytest.mark.parametrize(
    ("damage", "message"),
    [("pointer", r"active-adapter pointer .*active\.json is damaged"), ("misfit", "was trained on SomeOrg/Other")],
)
def test_a_bad_active_adapter_stops_the_start_with_one_message(
    settings: Any, registry: AdapterRegistry, adapter_files: dict[str, Path], damage: str, message: str
) -> None:
    if damage == "pointer":
        (registry.root / "active.json").write_text("{", encoding="utf-8")
    else:
        register(registry, "misfit", adapter_files["A"], "SomeOrg/Other")
        registry.activate("misfit")
    with pytest.raises(DomainbotError, match=message):
        open_backend(settings, follow_registry=True)


def test_a_pinned_registry_adapter_of_another_model_is_refused(
    settings: Any, registry: AdapterRegistry, adapter_files: dict[str, Path]
) -> None:
    register(registry, "misfit", adapter_files["A"], "SomeOrg/Other")
    with pytest.raises(DomainbotError, match="was trained on SomeOrg/Other"):
        open_backend(settings.model_copy(update={"adapter": Path("misfit")}), follow_registry=True)


# --- the swap itself, with scripted backends: no model needed -------------------------------------------------


class Loads:
    """Builds a scripted backend per adapter name; `gate` holds a load until the test releases it."""

    def __init__(self, replies: dict[str | None, list[str]]) -> None:
        self.replies = replies
        self.calls: list[str | None] = []
        self.gate = threading.Event()
        self.gate.set()
        self.failing: dict[str, BaseException] = {}

    def __call__(self, name: str | None) -> Backend:
        self.calls.append(name)
        self.gate.wait(timeout=10)
        if name in self.failing:
            raise self.failing[name]
        backend = ScriptedBackend().enqueue(self.replies.get(name, []))
        backend.adapter = name
        return backend


def fake_registry(root: Path, *names: str) -> AdapterRegistry:
    registry = AdapterRegistry(root)
    for name in names:
        files = root.parent / "files" / name
        files.mkdir(parents=True)
        (files / "adapter_config.json").write_text("{}", encoding="utf-8")
        (files / "adapter_model.safetensors").write_bytes(b"")
        register(registry, name, files, "scripted-model")
    return registry


def swappable(registry: AdapterRegistry, loads: Loads, poll_seconds: float = 0.0) -> SwappableBackend:
    token = registry.state_token()
    return SwappableBackend(loads(registry.active()), registry, loads, token, poll_seconds)


@pytest.fixture()
def scripted_registry(tmp_path: Path) -> AdapterRegistry:
    registry = fake_registry(tmp_path / "adapters", "A", "B", "C")
    registry.activate("A")
    return registry


@pytest.mark.parametrize("moment", ["while the prompt is built", "while the answer streams"])
def test_the_pipeline_logs_the_adapter_that_wrote_each_answer(scripted_registry: AdapterRegistry, moment: str) -> None:
    loads = Loads({"A": ["Written by A from start to end."], "B": ["Written by B."]})
    backend = swappable(scripted_registry, loads)
    store = FeedbackStore(":memory:")
    pipeline = Pipeline(
        backend=backend,
        params=GenerationParams(max_new_tokens=50),
        guard=Guardrails.load(embedder=None),
        feedback=store,
        prompt_text=load_prompt_text(),
        examples=load_examples(),
        embed=HashEmbedder(64).embed,
    )
    switched: list[bool] = []

    def activate_b(*_: object) -> None:
        if not switched:
            scripted_registry.activate("B")
            switched.append(backend.refresh())

    on_piece = None
    if moment == "while the answer streams":
        on_piece = activate_b
    else:
        serving_a = backend.current()
        count_tokens = serving_a.count_tokens
        serving_a.count_tokens = lambda messages: (activate_b(), count_tokens(messages))[1]  # type: ignore[method-assign]

    first = pipeline.answer("Who wrote this?", "c1", on_piece=on_piece)
    second = pipeline.answer("And this?", "c2")
    assert switched == [True]
    assert (first.adapter, first.raw_text) == ("A", "Written by A from start to end.")
    assert (second.adapter, second.raw_text) == ("B", "Written by B.")
    assert {i.conversation_id: i.adapter for i in store.interactions()} == {"c1": "A", "c2": "B"}


def test_a_check_loads_in_the_background_while_answers_use_the_old_adapter(
    scripted_registry: AdapterRegistry,
) -> None:
    loads = Loads({"A": ["old one", "old two"], "B": ["new"]})
    backend = swappable(scripted_registry, loads)
    assert backend.check() is None  # nothing changed: one file read, no thread

    loads.gate.clear()
    scripted_registry.activate("B")
    loader = backend.check()
    assert loader is not None
    assert backend.check() is None  # one load at a time
    assert generate(serving(backend)) == "old one"  # while B loads
    assert backend.adapter == "A"
    loads.gate.set()
    loader.join(timeout=10)
    assert (backend.adapter, generate(serving(backend))) == ("B", "new")
    assert loads.calls == ["A", "B"]


@pytest.mark.parametrize("error", [MemoryError(), torch.OutOfMemoryError("CUDA out of memory."), OSError("EIO")])
def test_out_of_memory_while_loading_keeps_serving(
    scripted_registry: AdapterRegistry, caplog: pytest.LogCaptureFixture, error: BaseException
) -> None:
    loads = Loads({"A": ["still A"], "C": ["C"]})
    loads.failing["B"] = error
    backend = swappable(scripted_registry, loads)
    scripted_registry.activate("B")
    with caplog.at_level(logging.WARNING, logger="bot.model.swap"):
        assert backend.refresh() is False
    assert len(caplog.records) == 1 and "adapter B could not be loaded" in caplog.records[0].getMessage()
    assert generate(backend) == "still A"
    scripted_registry.activate("C")
    assert backend.refresh() is True
    assert loads.calls == ["A", "B", "C"]


def test_a_damaged_pointer_while_running_keeps_serving(
    scripted_registry: AdapterRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    loads = Loads({"A": ["A"]})
    backend = swappable(scripted_registry, loads)
    (scripted_registry.root / "active.json").write_text("{", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="bot.model.swap"):
        assert backend.refresh() is False
    assert "active.json is damaged" in caplog.text
    assert backend.adapter == "A"


def test_the_poll_thread_switches_without_a_question(scripted_registry: AdapterRegistry) -> None:
    loads = Loads({"A": [], "B": []})
    backend = swappable(scripted_registry, loads, poll_seconds=0.01)
    scripted_registry.activate("B")
    deadline = time.monotonic() + 10
    while backend.adapter != "B" and time.monotonic() < deadline:
        time.sleep(0.01)
    backend.close()
    assert backend.adapter == "B"


def test_concurrent_answers_during_a_switch_each_finish_on_one_adapter(scripted_registry: AdapterRegistry) -> None:
    """Answers on worker threads (as the Telegram front end runs them) while adapters switch under them."""
    words = " ".join(f"w{i}" for i in range(30))
    loads = Loads({name: [f"{name} {words}"] * 20 for name in ("A", "B", "C")})
    backend = swappable(scripted_registry, loads)
    started = threading.Barrier(5)
    results: list[str] = []

    def answer() -> None:
        params = GenerationParams(max_new_tokens=100)
        stream: Iterator[str] = serving(backend).stream(MESSAGES, params, GenerationResult())
        first = next(stream)
        started.wait(timeout=10)
        results.append(first + "".join(stream))

    workers = [threading.Thread(target=answer) for _ in range(4)]
    for worker in workers:
        worker.start()
    started.wait(timeout=10)
    for name in ("B", "C"):
        scripted_registry.activate(name)
        assert backend.refresh() is True
    for worker in workers:
        worker.join(timeout=10)
    assert results == [f"A {words}"] * 4
    assert "".join(serving(backend).stream(MESSAGES, GenerationParams(max_new_tokens=100), GenerationResult())) == (
        f"C {words}"
    )


def test_registry_errors_are_domainbot_errors() -> None:
    assert issubclass(RegistryError, DomainbotError)
