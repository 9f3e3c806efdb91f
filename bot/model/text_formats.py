"""Alpaca and KoAlpaca prompt text, for models trained on those formats rather than on a chat template."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from bot.model.backend import Message

PromptFormat = Literal["chat", "alpaca", "koalpaca"]

# Such models have no end-of-turn token of their own: they go on with the next "### ..." header.
STOP_STRINGS: dict[str, tuple[str, ...]] = {
    "chat": (),
    "alpaca": ("### Instruction:", "### Response:", "### Input:"),
    "koalpaca": ("### 질문:", "### 답변:"),
}


def render(messages: Sequence[Message], prompt_format: PromptFormat) -> str:
    """The conversation as Alpaca (`### Instruction:` / `### Response:`) or KoAlpaca (`### 질문:` / `### 답변:`)."""
    if prompt_format == "chat":
        raise ValueError("the chat format is rendered by the model's own chat template")
    user, assistant = {
        "alpaca": ("### Instruction:\n{}\n\n### Response:\n", "{}\n\n"),
        "koalpaca": ("### 질문: {}\n\n### 답변:", " {}\n\n"),
    }[prompt_format]
    system = "\n".join(m["content"] for m in messages if m["role"] == "system")
    parts = [system + "\n\n"] if system else []
    for message in messages:
        if message["role"] == "user":
            parts.append(user.format(message["content"]))
        elif message["role"] == "assistant":
            parts.append(assistant.format(message["content"]))
    return "".join(parts)
