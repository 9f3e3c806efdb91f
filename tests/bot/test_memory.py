import threading

import pytest

from bot.memory import ConversationMemory


def test_keeps_the_last_turns_per_conversation() -> None:
    memory = ConversationMemory(max_turns=2)
    for i in range(3):
        memory.add("chat-1", f"q{i}", f"a{i}")
    memory.add("chat-2", "other", "reply")
    assert [m["content"] for m in memory.history("chat-1")] == ["q1", "a1", "q2", "a2"]
    assert [m["role"] for m in memory.history("chat-2")] == ["user", "assistant"]
    assert memory.history("unknown") == []


def test_forgets_the_least_recently_used_conversation() -> None:
    memory = ConversationMemory(max_conversations=2)
    memory.add("a", "q", "r")
    memory.add("b", "q", "r")
    memory.history("a")  # a is now the most recently used
    memory.add("c", "q", "r")
    assert (memory.history("a") != [], memory.history("b"), len(memory)) == (True, [], 2)


def test_reset_and_copies() -> None:
    memory = ConversationMemory()
    memory.add("a", "q", "r")
    memory.history("a").clear()
    assert len(memory.history("a")) == 2
    memory.reset("a")
    memory.reset("never-seen")
    assert memory.history("a") == []


def test_zero_turns_keeps_nothing_and_bad_limits_are_refused() -> None:
    memory = ConversationMemory(max_turns=0)
    memory.add("a", "q", "r")
    assert memory.history("a") == []
    with pytest.raises(ValueError, match="max_conversations >= 1"):
        ConversationMemory(max_conversations=0)


def test_threads() -> None:
    memory = ConversationMemory(max_turns=1000)
    threads = [
        threading.Thread(target=lambda n=n: [memory.add(f"c{n % 2}", "q", "a") for _ in range(100)]) for n in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(memory.history("c0")) == len(memory.history("c1")) == 400
