"""Conversation history, trimmed to a token budget before every turn."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bot.model.backend import Message

TokenCounter = Callable[[Sequence[Message]], int]


@dataclass
class Conversation:
    """The system prompt and the turns so far; `prompt()` builds what the model sees for the next question."""

    system_prompt: str
    turns: list[Message] = field(default_factory=list)

    def reset(self) -> None:
        self.turns.clear()

    def add_exchange(self, question: str, answer: str) -> None:
        self.turns.append({"role": "user", "content": question})
        self.turns.append({"role": "assistant", "content": answer})

    def prompt(
        self, question: str, count_tokens: TokenCounter, history_budget: int, total_budget: int
    ) -> list[Message]:
        """System prompt, as many recent turns as fit both budgets (oldest dropped first), then the question.

        `history_budget` caps the tokens earlier turns may add; `total_budget` caps the whole prompt.
        """
        head: list[Message] = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        tail: list[Message] = [{"role": "user", "content": question}]
        bare = count_tokens(head + tail)
        kept = list(self.turns)
        while kept:
            size = count_tokens(head + kept + tail)
            if size - bare <= history_budget and size <= total_budget:
                break
            # Drop the oldest exchange (a user turn and its answer) as a unit.
            kept = kept[2:]
        return head + kept + tail
