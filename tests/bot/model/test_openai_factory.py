"""The local fallback while the generation server is down, and the openai backend as the factory opens it."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings
from bot.errors import DomainbotError
from bot.model.backend import GenerationParams, GenerationResult, Message
from bot.model.factory import open_backend
from bot.model.fallback import FallbackBackend
from bot.model.openai_backend import OpenAIBackend
from bot.model.swap import serving
from tests.fakes import ScriptedBackend
from tests.openai_fake import FakeOpenAI, Reply, fake_openai, unused_url

QUESTION: list[Message] = [{"role": "user", "content": "Is it ready?"}]


@pytest.fixture()
def fake() -> Iterator[FakeOpenAI]:
    with fake_openai() as server:
        yield server


@pytest.fixture(autouse=True)
def no_local_tokenizer(monkeypatch: pytest.MonkeyPatch) -> None:
    # Prompt lengths estimated: loading the embedded model's tokenizer would cost seconds per test.
    monkeypatch.setenv("DOMAINBOT_MODEL", "no-such-folder-here")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def answer(backend: Any) -> tuple[str, str, GenerationResult]:
    """One answer as the pipeline takes it: the serving backend picked first, then streamed."""
    chosen = serving(backend)
    result = GenerationResult()
    text = "".join(chosen.stream(QUESTION, GenerationParams(max_new_tokens=20), result))
    return chosen.model_name, text, result


def wrap(fake: FakeOpenAI, local: ScriptedBackend, clock: Clock) -> FallbackBackend:
    server = OpenAIBackend(fake.url, "served-model", timeout=1.0, connect_timeout=1.0)
    return FallbackBackend(server, server.ping, lambda: local, retry_seconds=30.0, clock=clock)


def test_an_outage_is_answered_locally_with_one_warning_and_the_server_is_retried(
    fake: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    local = ScriptedBackend("local-model").enqueue(["Local one.", "Local two."])
    clock = Clock()
    backend = wrap(fake, local, clock)
    fake.enqueue("From the server.")
    with caplog.at_level(logging.WARNING, logger="bot.model.fallback"):
        assert answer(backend)[:2] == ("served-model", "From the server.")
        fake.down = True
        assert answer(backend)[:2] == ("local-model", "Local one.")
        clock.now = 10.0  # within the cool-down: the server is not asked
        asked = len(fake.requests)
        assert answer(backend)[:2] == ("local-model", "Local two.")
        assert len(fake.requests) == asked
        fake.down = False
        fake.enqueue("Back again.")
        clock.now = 31.0
        assert answer(backend)[:2] == ("served-model", "Back again.")
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2 and backend.outages == 1
    assert f"server at {fake.url} answered /models with HTTP 503" in warnings[0]
    assert "Answering with the local backend" in warnings[0]
    assert "answers again" in warnings[1]


def test_an_answer_that_fails_at_its_start_comes_from_the_fallback(fake: FakeOpenAI) -> None:
    local = ScriptedBackend("local-model").enqueue(["Local answer."])
    backend = wrap(fake, local, Clock())
    fake.enqueue(Reply([], fault="status", status=500, message="engine died"))
    _, text, result = answer(backend)
    assert text == "Local answer." and result.finish_reason == "eos"
    assert backend.is_down() and len(local.calls) == 1


def test_a_fallback_that_cannot_start_says_both_things() -> None:
    server = OpenAIBackend(unused_url(), "m", connect_timeout=1.0)

    def broken() -> ScriptedBackend:
        raise DomainbotError("Model folder /nowhere has no config.json.")

    backend = FallbackBackend(server, server.ping, broken, retry_seconds=5.0)
    with pytest.raises(DomainbotError, match="server is down and the local fallback backend cannot start: Model"):
        answer(backend)


def openai_settings(url: str, **values: Any) -> Settings:
    return Settings(backend="openai", openai_url=url, openai_timeout=2.0, openai_connect_timeout=1.0, **values)


def test_the_factory_opens_the_server_backend_with_settings_from_the_environment(
    fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.api_key = "sk-env-" + "2" * 10
    monkeypatch.setenv("DOMAINBOT_OPENAI_API_KEY", fake.api_key)
    fake.enqueue("Ready.")
    settings = openai_settings(fake.url)
    opened = open_backend(settings, follow_registry=True)
    assert isinstance(opened.backend, OpenAIBackend)
    assert (opened.path, opened.source) == (fake.url, "server")
    assert answer(opened.backend)[:2] == ("served-model", "Ready.")
    assert "sk-env" not in str(settings.model_dump())


def test_a_missing_url_or_a_down_server_without_fallback_is_one_error() -> None:
    with pytest.raises(DomainbotError, match="DOMAINBOT_BACKEND=openai needs DOMAINBOT_OPENAI_URL"):
        open_backend(Settings(backend="openai"))
    with pytest.raises(DomainbotError, match="cannot be reached"):
        open_backend(openai_settings(unused_url()))


def test_an_adapter_is_sent_as_the_model_name_only_when_so_configured(fake: FakeOpenAI) -> None:
    fake.models = [{"id": "base"}, {"id": "support-v2"}]
    with pytest.raises(DomainbotError, match="DOMAINBOT_OPENAI_ADAPTER_AS_MODEL=true"):
        open_backend(openai_settings(fake.url, adapter=Path("support-v2")))
    fake.enqueue("Adapted.")
    opened = open_backend(openai_settings(fake.url, adapter=Path("support-v2"), openai_adapter_as_model=True))
    name, text, _ = answer(opened.backend)
    assert (name, text, opened.backend.adapter) == ("support-v2", "Adapted.", "support-v2")
    assert (fake.completions[0].body or {})["model"] == "support-v2"


def test_a_server_down_at_start_is_replaced_by_the_local_model(
    tiny_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    settings = tiny_settings.model_copy(
        update={
            "backend": "openai",
            "openai_url": unused_url(),
            "openai_fallback": "local",
            "openai_connect_timeout": 1.0,
        }
    )
    with caplog.at_level(logging.WARNING, logger="bot.model.fallback"):
        opened = open_backend(settings, follow_registry=False)
    assert isinstance(opened.backend, FallbackBackend)
    name, text, result = answer(opened.backend)
    assert serving(opened.backend).name in ("native", "transformers") and name == Path(str(settings.model)).name
    assert result.new_tokens > 0 and isinstance(text, str)
    assert "cannot be reached" in caplog.text


def test_the_registry_s_active_adapter_is_followed_by_name(
    fake: FakeOpenAI, tiny_model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from datetime import UTC, datetime

    from bot.model.swap import SwappableBackend
    from tests.helpers import make_adapter
    from training.registry import AdapterCard, AdapterRegistry

    settings = openai_settings(fake.url, openai_adapter_as_model=True, adapter_poll_seconds=0.0)
    registry = AdapterRegistry.in_data_dir(settings.data_dir)
    files = tmp_path / "adapter"
    make_adapter(tiny_model_dir, files, target_modules=["q_proj"])
    for name in ("support-v1", "support-v2", "support-v3"):
        registry.add(
            files, AdapterCard(name=name, kind="sft", base_model="any", created_at=datetime.now(UTC).isoformat())
        )
    fake.models = [{"id": "base"}, {"id": "support-v1"}, {"id": "support-v2"}]  # v3 is not loaded on the server
    registry.activate("support-v1")
    opened = open_backend(settings, follow_registry=True)
    assert isinstance(opened.backend, SwappableBackend)
    fake.enqueue("One.", "Two.", "Three.")
    assert answer(opened.backend)[:2] == ("support-v1", "One.")
    registry.activate("support-v2")
    assert opened.backend.refresh()
    assert answer(opened.backend)[:2] == ("support-v2", "Two.")
    registry.activate("support-v3")
    with caplog.at_level(logging.WARNING, logger="bot.model.swap"):
        assert not opened.backend.refresh()
    assert "does not serve the adapter 'support-v3'" in caplog.text
    assert answer(opened.backend)[:2] == ("support-v2", "Three.")
    assert [(r.body or {})["model"] for r in fake.completions] == ["support-v1", "support-v2", "support-v2"]
    opened.backend.close()
