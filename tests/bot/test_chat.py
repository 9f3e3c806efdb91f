import pytest

from bot.chat import ChatSession
from bot.errors import DomainbotError
from bot.model.backend import GenerationParams
from tests.fakes import ScriptedBackend


def session_with(*replies: str, window: int = 4096) -> tuple[ChatSession, ScriptedBackend]:
    backend = ScriptedBackend(window=window).enqueue(replies)
    return ChatSession(backend, GenerationParams(max_new_tokens=50), "Be brief.", history_max_tokens=500), backend


def test_reply_carries_text_model_usage_and_timings() -> None:
    session, _ = session_with("Paris is the capital.")
    pieces: list[str] = []
    reply = session.ask("  What is the capital of France?  ", on_piece=pieces.append)
    assert reply.text == "Paris is the capital."
    assert "".join(pieces) == reply.text
    assert (reply.model, reply.adapter, reply.backend) == ("scripted-model", None, "scripted")
    assert reply.finish_reason == "eos"
    assert reply.usage["completion_tokens"] == 4
    assert {"prompt", "total"} <= reply.timings.keys()


def test_history_is_sent_and_reset_forgets_it() -> None:
    session, backend = session_with("one", "two", "three")
    session.ask("first")
    session.ask("second")
    assert [m["content"] for m in backend.calls[1]] == ["Be brief.", "first", "one", "second"]
    session.reset()
    session.ask("third")
    assert [m["content"] for m in backend.calls[2]] == ["Be brief.", "third"]


@pytest.mark.parametrize("question", ["", "   ", "\n"])
def test_empty_question_is_refused_without_calling_the_model(question: str) -> None:
    session, backend = session_with()
    with pytest.raises(DomainbotError, match="empty"):
        session.ask(question)
    assert backend.calls == []


def test_question_longer_than_the_context_is_refused() -> None:
    session, backend = session_with(window=100)
    with pytest.raises(DomainbotError, match="too long"):
        session.ask("word " * 200)
    assert backend.calls == []
