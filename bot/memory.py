"""Conversation memory: one history per conversation id, bounded in turns and in conversations kept."""

from __future__ import annotations

import threading
from collections import OrderedDict

from bot.model.backend import Message


class ConversationMemory:
    """Recent turns per conversation. The least recently used conversation is forgotten past `max_conversations`;
    within one, only the last `max_turns` exchanges are kept."""

    def __init__(self, max_conversations: int = 1000, max_turns: int = 20) -> None:
        if max_conversations < 1 or max_turns < 0:
            raise ValueError(
                f"expected max_conversations >= 1 and max_turns >= 0, got {max_conversations}, {max_turns}"
            )
        self.max_conversations = max_conversations
        self.max_turns = max_turns
        self.conversations: OrderedDict[str, list[Message]] = OrderedDict()
        self.lock = threading.Lock()

    def history(self, conversation_id: str) -> list[Message]:
        """A copy of the conversation's turns, oldest first."""
        with self.lock:
            turns = self.conversations.get(conversation_id)
            if turns is None:
                return []
            self.conversations.move_to_end(conversation_id)
            return list(turns)

    def add(self, conversation_id: str, question: str, answer: str) -> None:
        with self.lock:
            turns = self.conversations.setdefault(conversation_id, [])
            self.conversations.move_to_end(conversation_id)
            turns += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
            del turns[: max(0, len(turns) - 2 * self.max_turns)]
            while len(self.conversations) > self.max_conversations:
                self.conversations.popitem(last=False)

    def reset(self, conversation_id: str) -> None:
        with self.lock:
            self.conversations.pop(conversation_id, None)

    def __len__(self) -> int:
        return len(self.conversations)
