"""Answer-only labels through the chat template, and packing that keeps examples apart."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bot.errors import DomainbotError
from bot.model.chat_format import ChatFormat
from tests.training.conftest import QA, conversation
from training.datasets import ChatMessage
from training.encoding import IGNORE_INDEX, ConversationEncoder, truncate
from training.packing import Row, collate, micro_batches, pack, unpacked


def trained_text(encoder: ConversationEncoder, ids: list[int], labels: list[int]) -> str:
    return encoder.format.decode([t for t, label in zip(ids, labels, strict=True) if label != IGNORE_INDEX], False)


def test_only_the_answers_are_trained(tiny_model: Path) -> None:
    encoder = ConversationEncoder(tiny_model)
    messages = [
        ChatMessage(role="system", content="Be brief."),
        ChatMessage(role="user", content="What is the capital of France?"),
        ChatMessage(role="assistant", content="Paris."),
        ChatMessage(role="user", content="Numbers?"),
        ChatMessage(role="assistant", content="42"),
    ]
    encoded = encoder.encode(messages)
    assert trained_text(encoder, encoded.input_ids, encoded.labels) == "Paris.<|im_end|>\n42<|im_end|>\n"
    # The prompt is tokenised exactly as the bot tokenises it at answer time.
    prompt = ChatFormat(tiny_model).encode_chat([{"role": m.role, "content": m.content} for m in messages[:2]])
    assert encoded.input_ids[: len(prompt)] == prompt
    assert all(label == IGNORE_INDEX for label in encoded.labels[: len(prompt)])


@pytest.mark.parametrize(("prompt_format", "marker"), [("alpaca", "### Response:"), ("koalpaca", "### 답변:")])
def test_text_formats_end_answers_with_eos(tiny_model: Path, prompt_format: str, marker: str) -> None:
    encoder = ConversationEncoder(tiny_model, prompt_format)  # type: ignore[arg-type]
    encoded = encoder.encode(conversation("What is the capital of France?", "Paris.").messages)
    assert marker in encoder.format.decode(encoded.input_ids, False)
    assert encoded.labels[-1] == encoder.eos_id
    assert trained_text(encoder, encoded.input_ids, encoded.labels).strip().startswith("Paris.")


def test_a_conversation_without_an_answer_is_refused(tiny_model: Path) -> None:
    with pytest.raises(DomainbotError, match="no assistant answer"):
        ConversationEncoder(tiny_model).encode([ChatMessage(role="user", content="Hello?")])


def test_truncation_keeps_only_examples_with_an_answer_left(tiny_model: Path) -> None:
    encoded = ConversationEncoder(tiny_model).encode(conversation(*QA[0]).messages)
    assert truncate(encoded, len(encoded)) is encoded
    assert truncate(encoded, 3) is None  # three tokens of prompt: nothing trained is left
    # Only prompt tokens in the way: the oldest go and the answer stays whole.
    cut = truncate(encoded, len(encoded) - 1)
    assert cut is not None and len(cut) == len(encoded) - 1 and cut.trained_tokens == encoded.trained_tokens
    assert cut.input_ids == encoded.input_ids[1:]
    # An answer longer than the room: its beginning is kept, with the prompt.
    long_answer = ConversationEncoder(tiny_model).encode(conversation(QA[0][0], " ".join([QA[0][1]] * 20)).messages)
    start = truncate(long_answer, 40)
    assert start is not None and start.input_ids == long_answer.input_ids[:40]


def test_only_the_last_turn_is_trained_when_asked(tiny_model: Path) -> None:
    encoder = ConversationEncoder(tiny_model)
    few_shot = [*conversation(*QA[0]).messages, *conversation(*QA[1]).messages]
    encoded = encoder.encode(few_shot, last_turn_only=True)
    assert trained_text(encoder, encoded.input_ids, encoded.labels) == "42 and 3.14<|im_end|>\n"
    assert encoded.input_ids == encoder.encode(few_shot).input_ids


def test_packing_fills_rows_and_restarts_positions(tiny_model: Path) -> None:
    encoder = ConversationEncoder(tiny_model)
    examples = [encoder.encode(conversation(q, a).messages) for q, a in QA]
    longest = max(len(e) for e in examples)
    rows = pack(examples, max_len=2 * longest)
    assert len(rows) < len(examples)
    assert sum(len(r) for r in rows) == sum(len(e) for e in examples)
    for row in rows:
        assert len(row) <= 2 * longest
        starts = [i for i, p in enumerate(row.position_ids) if p == 0]
        # The first token of every packed example is never a target of the example before it.
        assert all(row.labels[i] == IGNORE_INDEX for i in starts)


def test_collate_targets_are_the_next_trained_tokens() -> None:
    row = Row()
    from training.encoding import EncodedExample

    row.add(EncodedExample([1, 2, 3, 4], [IGNORE_INDEX, IGNORE_INDEX, 3, 4]))
    short = Row()
    short.add(EncodedExample([5, 6], [IGNORE_INDEX, 6]))
    batch = collate([row, short], pad_id=0)
    assert batch.input_ids.tolist() == [[1, 2, 3, 4], [5, 6, 0, 0]]
    assert batch.position_ids.tolist() == [[0, 1, 2, 3], [0, 1, 0, 1]]  # padding is its own segment
    assert batch.target_index.tolist() == [1, 2, 4]  # position 1 predicts 3, 2 predicts 4, 4 (row 2) predicts 6
    assert batch.targets.tolist() == [3, 4, 6]
    assert batch.real_tokens == 6


def test_packed_examples_do_not_see_each_other(tiny_model: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    encoder = ConversationEncoder(tiny_model)
    first, second = (encoder.encode(conversation(q, a).messages) for q, a in QA[:2])
    row = Row()
    row.add(first)
    row.add(second)
    packed = collate([row], encoder.pad_id)
    alone = collate(unpacked([second]), encoder.pad_id)
    with torch.no_grad():
        hidden_packed = model.model(
            input_ids=packed.input_ids, position_ids=packed.position_ids, use_cache=False
        ).last_hidden_state[0]
        hidden_alone = model.model(
            input_ids=alone.input_ids, position_ids=alone.position_ids, use_cache=False
        ).last_hidden_state[0]
        # Without restarting positions the second example would attend to the first: the check can fail.
        leaky = model.model(input_ids=packed.input_ids, use_cache=False).last_hidden_state[0]
    segment = hidden_packed[len(first) :]
    assert not torch.allclose(leaky[len(first) :], hidden_alone, atol=1e-3)
    torch.testing.assert_close(segment, hidden_alone, atol=1e-5, rtol=1e-4)


def test_micro_batches_are_seeded_and_cover_every_row(tiny_model: Path) -> None:
    encoder = ConversationEncoder(tiny_model)
    rows = unpacked([encoder.encode(conversation(q, a).messages) for q, a in QA * 5])
    first, again, other = (micro_batches(rows, 3, seed) for seed in (1, 1, 2))
    assert [[id(r) for r in b] for b in first] == [[id(r) for r in b] for b in again]
    assert [[id(r) for r in b] for b in first] != [[id(r) for r in b] for b in other]
    assert sorted(id(r) for b in first for r in b) == sorted(id(r) for r in rows)
