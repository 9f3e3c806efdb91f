"""Scripted fakes at the model boundary."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from bot.model.backend import GenerationParams, GenerationResult, Message


class ScriptedBackend:
    """A Backend whose answers are queued with `enqueue`; every call is recorded; an unscripted call fails."""

    name = "scripted"

    def __init__(self, model_name: str = "scripted-model", window: int = 4096) -> None:
        self.model_name = model_name
        self.adapter: str | None = None
        self.window = window
        self.replies: list[str] = []
        self.calls: list[list[Message]] = []
        self.params: list[GenerationParams] = []

    def enqueue(self, replies: Sequence[str]) -> ScriptedBackend:
        self.replies.extend(replies)
        return self

    def count_tokens(self, messages: Sequence[Message]) -> int:
        # One token per word plus four per message for the template's markers.
        return sum(len(m["content"].split()) + 4 for m in messages)

    def context_window(self) -> int:
        return self.window

    def stream(self, messages: Sequence[Message], params: GenerationParams, result: GenerationResult) -> Iterator[str]:
        if not self.replies:
            raise AssertionError(f"backend called more often than scripted; call {len(self.calls) + 1}: {messages!r}")
        self.calls.append(list(messages))
        self.params.append(params)
        reply = self.replies.pop(0)
        result.prompt_tokens = self.count_tokens(messages)
        words = reply.split(" ")
        for i, word in enumerate(words[: params.max_new_tokens]):
            result.new_tokens += 1
            yield word if i == 0 else " " + word
        result.finish_reason = "eos" if len(words) <= params.max_new_tokens else "length"
