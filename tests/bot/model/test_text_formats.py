from pathlib import Path

import pytest

from bot.model.backend import GenerationParams, GenerationResult, StopStrings
from bot.model.factory import open_backend
from bot.model.text_formats import STOP_STRINGS, render
from tests.helpers import build_tiny_model

CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is LoRA?"},
    {"role": "assistant", "content": "A low-rank adapter."},
    {"role": "user", "content": "Who made it?"},
]


def test_alpaca_text() -> None:
    assert render(CHAT, "alpaca") == (
        "Be brief.\n\n### Instruction:\nWhat is LoRA?\n\n### Response:\nA low-rank adapter.\n\n"
        "### Instruction:\nWho made it?\n\n### Response:\n"
    )


def test_koalpaca_text() -> None:
    text = render([{"role": "user", "content": "서울은 어디인가요?"}], "koalpaca")
    assert text == "### 질문: 서울은 어디인가요?\n\n### 답변:"


def test_chat_format_is_the_templates_job() -> None:
    with pytest.raises(ValueError, match="chat template"):
        render(CHAT, "chat")


@pytest.mark.parametrize(
    ("pieces", "expected", "stopped"),
    [
        (["Paris is", " nice.\n\n##", "# Instruction:", " more"], "Paris is nice.\n\n", True),
        (["a #", "# b"], "a ## b", False),
        (["answer ### 질문: next"], "answer ", True),
    ],
)
def test_stop_strings_hold_back_partial_matches(pieces: list[str], expected: str, stopped: bool) -> None:
    stops = StopStrings(STOP_STRINGS["alpaca"] + STOP_STRINGS["koalpaca"])
    out = ""
    for piece in pieces:
        out += stops.feed(piece)
        if stops.stopped:
            break
    out += stops.flush()
    assert (out, stops.stopped) == (expected, stopped)


@pytest.mark.parametrize("backend", ["native", "transformers"])
def test_model_without_chat_template_runs_with_a_text_format(tmp_path: Path, tiny_settings, backend: str) -> None:
    folder = build_tiny_model(tmp_path / "alpaca-model", chat_template=None)
    settings = tiny_settings.model_copy(update={"model": str(folder), "prompt_format": "alpaca", "backend": backend})
    opened = open_backend(settings)
    ids = opened.backend.encode(CHAT)
    assert opened.backend.name == backend
    tokenizer_text = render(CHAT, "alpaca")
    assert len(ids) >= len(tokenizer_text.split())
    result = GenerationResult()
    list(opened.backend.stream(CHAT, GenerationParams(max_new_tokens=5, stop=STOP_STRINGS["alpaca"]), result))
    assert result.prompt_tokens == len(ids)


def test_both_backends_encode_text_formats_alike(tmp_path: Path, tiny_settings) -> None:
    folder = build_tiny_model(tmp_path / "plain", chat_template=None)
    base = tiny_settings.model_copy(update={"model": str(folder), "prompt_format": "koalpaca"})
    native = open_backend(base.model_copy(update={"backend": "native"})).backend
    reference = open_backend(base.model_copy(update={"backend": "transformers"})).backend
    assert native.count_tokens(CHAT) == reference.count_tokens(CHAT)
