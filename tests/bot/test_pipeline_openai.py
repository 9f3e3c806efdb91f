"""The answer pipeline generating on an OpenAI-compatible server (the stand-in on 127.0.0.1)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.feedback import FeedbackStore
from bot.model.backend import GenerationParams
from bot.model.openai_backend import OpenAIBackend, OpenAIServerError
from bot.pipeline import Pipeline
from bot.prompting import load_examples, load_prompt_text
from guardrails import Guardrails
from knowledge import HashEmbedder, KnowledgeBase, KnowledgeConfig
from tests.openai_fake import FakeOpenAI, Reply, fake_openai

WARRANTY = "All grinders carry a two-year warranty from the date of purchase."
embedder = HashEmbedder(128)


@pytest.fixture()
def fake() -> Iterator[FakeOpenAI]:
    with fake_openai() as server:
        yield server


@pytest.fixture()
def pipeline(tmp_path: Path, fake: FakeOpenAI) -> Iterator[Pipeline]:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "warranty.md").write_text(f"# Warranty\n\n{WARRANTY}\n", encoding="utf-8")
    kb = KnowledgeBase(KnowledgeConfig(data_dir=tmp_path / "data"), embedder)
    kb.add([docs])
    backend = OpenAIBackend(fake.url, timeout=0.5, connect_timeout=1.0)
    backend.connect()
    yield Pipeline(
        backend=backend,
        params=GenerationParams(max_new_tokens=100),
        guard=Guardrails.load(embedder=None),
        feedback=FeedbackStore(":memory:"),
        prompt_text=load_prompt_text(),
        examples=load_examples(),
        embed=embedder.embed,
        knowledge=kb,
    )
    kb.close()


def test_an_answer_generated_on_the_server_is_checked_cited_and_logged(pipeline: Pipeline, fake: FakeOpenAI) -> None:
    fake.enqueue(Reply(["Grinders", " carry", " a", " two-year", " warranty", " [1]."], prompt_tokens=321))
    pieces: list[str] = []
    answer = pipeline.answer("How long is the grinder warranty?", "chat-1", user_id="u1", on_piece=pieces.append)
    assert answer.text == "Grinders carry a two-year warranty [1]."
    assert "".join(pieces) == answer.raw_text
    assert answer.citations[0].source.endswith("warranty.md")
    assert [c.verdict for c in answer.claims] == ["supported"]
    assert (answer.backend, answer.model, answer.finish_reason) == ("openai", "served-model", "eos")
    assert answer.usage == {"prompt_tokens": 321, "completion_tokens": 6}
    sent = (fake.completions[0].body or {})["messages"]
    assert WARRANTY in sent[-1]["content"] and sent[-1]["content"].endswith("How long is the grinder warranty?")
    logged = pipeline.feedback.get(str(answer.interaction_id))
    assert (logged.model, logged.answer) == ("served-model", answer.text)
    assert logged.prompt == sent


def test_a_cut_stream_gives_the_answer_that_arrived(pipeline: Pipeline, fake: FakeOpenAI) -> None:
    fake.enqueue(Reply(["Grinders", " carry", " a", " two-year", " warranty"], fault="cut", after=4))
    answer = pipeline.answer("How long is the grinder warranty?")
    assert answer.raw_text == "Grinders carry a two-year" and answer.finish_reason == "interrupted"
    assert pipeline.feedback.stats()["interactions"] == 1


def test_a_server_error_reaches_the_caller_and_logs_nothing(pipeline: Pipeline, fake: FakeOpenAI) -> None:
    fake.enqueue(Reply([], fault="status", status=503, message="no capacity"))
    with pytest.raises(OpenAIServerError, match="HTTP 503: no capacity"):
        pipeline.answer("How long is the grinder warranty?")
    assert pipeline.feedback.stats()["interactions"] == 0
