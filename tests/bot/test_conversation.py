from bot.conversation import Conversation
from tests.fakes import ScriptedBackend

count = ScriptedBackend().count_tokens  # words + 4 per message


def test_prompt_orders_system_history_question() -> None:
    conversation = Conversation("Be brief.")
    conversation.add_exchange("first question", "first answer")
    messages = conversation.prompt("next one", count, history_budget=1000, total_budget=1000)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[0]["content"] == "Be brief."
    assert messages[-1]["content"] == "next one"


def test_oldest_exchanges_go_first_when_over_the_history_budget() -> None:
    conversation = Conversation("")
    for i in range(5):
        conversation.add_exchange(f"question {i}", f"answer number {i}")  # 6 + 7 tokens an exchange
    messages = conversation.prompt("now", count, history_budget=26, total_budget=1000)
    assert [m["content"] for m in messages] == ["question 3", "answer number 3", "question 4", "answer number 4", "now"]


def test_total_budget_also_trims_history_but_keeps_the_question() -> None:
    conversation = Conversation("system words here")
    conversation.add_exchange("old " * 20, "reply " * 20)
    messages = conversation.prompt("the question", count, history_budget=1000, total_budget=20)
    assert [m["role"] for m in messages] == ["system", "user"]


def test_zero_budget_keeps_no_history_and_reset_clears() -> None:
    conversation = Conversation("s")
    conversation.add_exchange("q", "a")
    assert len(conversation.prompt("x", count, history_budget=0, total_budget=100)) == 2
    conversation.reset()
    assert conversation.turns == []
