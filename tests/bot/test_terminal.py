import io

import pytest

from bot.chat import ChatSession, Reply
from bot.model.backend import GenerationParams
from bot.terminal import run_chat, show_reply
from tests.fakes import ScriptedBackend


def chat(lines: str, *replies: str) -> tuple[str, ScriptedBackend, int]:
    backend = ScriptedBackend().enqueue(replies)
    session = ChatSession(backend, GenerationParams(), "sys", history_max_tokens=500)
    out = io.StringIO()
    answered = run_chat(session, stdin=io.StringIO(lines), stdout=out)
    return out.getvalue(), backend, answered


def test_piped_input_gets_one_answer_per_line() -> None:
    output, backend, answered = chat("What is domainbot?\n\nAnd Telegram?\n", "A domain bot.", "A front end.")
    assert output == "A domain bot.\nA front end.\n"
    assert answered == 2
    assert [m["content"] for m in backend.calls[1]][-3:] == ["What is domainbot?", "A domain bot.", "And Telegram?"]


def test_reset_help_and_unknown_commands() -> None:
    output, backend, _ = chat("first\n/reset\n/help\n/frobnicate\nsecond\n", "one", "two")
    assert "Conversation cleared." in output
    assert "/reset" in output and "/quit" in output
    assert "Unknown command /frobnicate" in output
    assert [m["content"] for m in backend.calls[1]] == ["sys", "second"]


def test_quit_stops_reading() -> None:
    _output, backend, answered = chat("hello\n/quit\nnever asked\n", "hi")
    assert answered == 1
    assert len(backend.calls) == 1  # the scripted backend would fail the test on a second call


def test_a_failing_question_does_not_end_the_chat() -> None:
    output, _, _answered = chat("   x" + " word" * 5000 + "\nok?\n", "fine")
    assert "error: The question is too long" in output
    assert output.endswith("fine\n")


class TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_chat_says_when_a_new_adapter_answers(monkeypatch) -> None:
    backend = ScriptedBackend().enqueue(["one", "two", "three"])
    backend.adapter = "round-001"
    session = ChatSession(backend, GenerationParams(), "sys", history_max_tokens=500)
    lines = iter(["first", "second", "third"])

    def typed(prompt: str) -> str:
        line = next(lines, None)
        if line is None:
            raise EOFError
        if line == "third":  # an activation was picked up between the second and third question
            backend.adapter = "round-002"
        return line

    monkeypatch.setattr("builtins.input", typed)
    out = TTY()
    assert run_chat(session, stdin=TTY(), stdout=out) == 3
    text = out.getvalue()
    assert text.startswith("domainbot · scripted-model + adapter round-001 ·")
    assert text.count("(switched to") == 1
    assert text.index("two") < text.index("(switched to adapter round-002)") < text.index("three")


@pytest.mark.parametrize(
    ("streamed", "text", "shown"),
    [
        (None, "The answer [1].", "The answer [1]."),  # piped: the answer once
        ("The answer [1].", "The answer [1].", "The answer [1]."),  # streamed as it stands: not again
        ("", "From the passages [1].", "From the passages [1]."),  # nothing generated: the answer once
        ("Made up.", "From the passages [1].", "Made up.\n\n(checked) From the passages [1]."),
    ],
)
def test_show_reply_prints_the_answer_once(streamed: str | None, text: str, shown: str) -> None:
    out = io.StringIO()
    if streamed:
        out.write(streamed)
    reply = Reply(text=text, model="m", adapter=None, backend="b", finish_reason="eos")
    show_reply(reply, out, streamed=streamed)
    assert out.getvalue() == shown + "\n"
