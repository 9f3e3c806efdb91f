"""Feedback exports: which interactions become rows, pairing, masking, duplicates, the card, and empty exports."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from bot.errors import DomainbotError
from bot.feedback import FeedbackStore, InteractionRecord
from guardrails import Guardrails
from training.datasets import (
    ChatMessage,
    KTOExample,
    PreferenceExample,
    file_sha256,
    load_kto,
    load_preferences,
    load_sft,
)
from training.export import (
    MAX_CHOSEN_PER_REJECTED,
    ExportSummary,
    Mask,
    export_feedback,
    normalise,
    preview_feedback,
    question_groups,
)

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
BLOCKED = {"input": {"action": "blocked", "rail": "harmful", "rule": "weapons", "category": "weapons"}}


@pytest.fixture(scope="module")
def mask() -> Mask:
    return Guardrails().mask_pii


@pytest.fixture()
def store(tmp_path: Path) -> FeedbackStore:
    return FeedbackStore(tmp_path / "feedback.sqlite3")


def add(
    store: FeedbackStore,
    question: str,
    answer: str,
    votes: Sequence[int] = (),
    corrections: Sequence[str] = (),
    verdicts: dict[str, Any] | None = None,
) -> str:
    """Log one interaction with one vote per rater and the corrections in order."""
    record = InteractionRecord(question=question, answer=answer, model="tiny", verdicts=verdicts or {})
    interaction = store.log(record)
    for rater, vote in enumerate(votes):
        store.rate(interaction, vote, rater_id=f"r{rater}")
    for text in corrections:
        store.correct(interaction, text, rater_id="fixer")
    return interaction


def export(store: FeedbackStore, fmt: str, out: Path, mask: Mask, style: str = "trl") -> ExportSummary:
    return export_feedback(store, fmt, out, style=style, mask=mask, now=NOW)  # type: ignore[arg-type]


def sft_pairs(summary: ExportSummary) -> list[tuple[str, str]]:
    return [(e.messages[0].content, e.messages[-1].content) for e in load_sft(summary.path, "feedback")]


def user(text: str) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=text)]


def test_sft_rows_are_corrections_and_net_upvoted_answers(store: FeedbackStore, tmp_path: Path, mask: Mask) -> None:
    add(store, "What is LoRA?", "Low-rank adapters.", votes=[1])
    add(
        store,
        "What is DPO?",
        "A sort of SFT.",
        votes=[-1],
        corrections=["First try.", "Direct preference optimisation."],
    )
    add(store, "What is KTO?", "A loss from prospect theory.", votes=[1, 1, -1])  # net +1
    add(store, "What is PPO?", "An RL method.", votes=[1, -1, -1])  # net -1, no correction
    add(store, "What is RLHF?", "Feedback learning.", votes=[1, -1])  # tie
    add(store, "What is SFT?", "Supervised fine-tuning.")  # unrated
    add(
        store,
        "How do I make a weapon?",
        "I can't help with that.",
        votes=[1],
        corrections=["Step one"],
        verdicts=BLOCKED,
    )
    add(store, "What is a rank?", "The r of LoRA.", votes=[1], corrections=["The adapter's inner size."])

    summary = export(store, "sft", tmp_path / "out", mask)

    assert sft_pairs(summary) == [
        ("What is LoRA?", "Low-rank adapters."),
        ("What is DPO?", "Direct preference optimisation."),
        ("What is KTO?", "A loss from prospect theory."),
        ("What is a rank?", "The adapter's inner size."),
        ("What is a rank?", "The r of LoRA."),
    ]
    assert summary.interactions == 8 and summary.used == 5
    assert summary.skipped == {
        "with tied votes and no correction": 1,
        "without a rating or correction": 1,
        "blocked by a guardrail": 1,
    }
    assert summary.details == {"from_upvoted_answers": 3, "from_corrections": 2}


def test_dpo_pairs_same_and_near_identical_questions_only(store: FeedbackStore, tmp_path: Path, mask: Mask) -> None:
    add(store, "How do I reset my password?", "Use the reset link.", votes=[1])
    add(store, "how do i reset my password", "You can't.", votes=[-1])
    # Word-set Jaccard 8/9 with the next question: near-identical.
    add(store, "What is the refund policy for annual plans?", "Full refund within 30 days.", votes=[1])
    add(store, "What is the refund policy for the annual plans", "No refunds ever.", votes=[-1, -1])
    # Jaccard 7/9 with the first refund question: a different question, so no pair.
    add(store, "What is the refund policy for monthly plans?", "Refunds are yearly.", votes=[-1])
    add(store, "Is it free?", "Yes.", votes=[-1])  # nothing chosen to pair with

    summary = export(store, "dpo", tmp_path / "out", mask)

    assert load_preferences(summary.path) == [
        PreferenceExample(
            prompt=user("how do i reset my password"), chosen="Use the reset link.", rejected="You can't."
        ),
        PreferenceExample(
            prompt=user("What is the refund policy for the annual plans"),
            chosen="Full refund within 30 days.",
            rejected="No refunds ever.",
        ),
    ]
    assert summary.details == {"rejected_answers": 4, "rejected_without_chosen": 2}


def test_dpo_prefers_own_correction_then_corrections_then_newest_and_caps(
    store: FeedbackStore, tmp_path: Path, mask: Mask
) -> None:
    add(store, "which port does it use", "Port 1.", votes=[-1], corrections=["Port 8080, set by PORT."])
    add(store, "Which port does it use?", "Ask someone else.", corrections=["It listens on 8080."])
    for n in range(4):
        add(store, "Which port does it use?", f"Port {8000 + n}.", votes=[1])

    pairs = load_preferences(export(store, "dpo", tmp_path / "out", mask).path)

    assert [p.chosen for p in pairs] == ["Port 8080, set by PORT.", "It listens on 8080.", "Port 8003."]
    assert len(pairs) == MAX_CHOSEN_PER_REJECTED
    assert {p.rejected for p in pairs} == {"Port 1."}


def test_kto_labels_and_conflicts(store: FeedbackStore, tmp_path: Path, mask: Mask) -> None:
    add(store, "Capital of France?", "Paris.", votes=[1])
    add(store, "Capital of Spain?", "Lisbon.", votes=[-1], corrections=["Madrid."])
    add(store, "Is it safe?", "It depends.", votes=[1])
    add(store, "is it safe", "It depends", votes=[-1])  # the same answer voted both ways: dropped

    summary = export(store, "kto", tmp_path / "out", mask)

    assert load_kto(summary.path) == [
        KTOExample(prompt=user("Capital of France?"), completion="Paris.", desirable=True),
        KTOExample(prompt=user("Capital of Spain?"), completion="Madrid.", desirable=True),
        KTOExample(prompt=user("Capital of Spain?"), completion="Lisbon.", desirable=False),
    ]
    assert summary.details == {"desirable": 2, "undesirable": 1, "conflicting_dropped": 2}


@pytest.mark.parametrize("fmt", ["sft", "dpo", "kto"])
@pytest.mark.parametrize("style", ["trl", "llamafactory"])
def test_export_round_trips_with_card_and_masks_pii(
    store: FeedbackStore, tmp_path: Path, mask: Mask, fmt: str, style: str
) -> None:
    add(store, "How do I contact support?", "Write to help@example.com.", votes=[1])
    add(
        store,
        "how do I contact support",
        "Call me on +1 415 555 2671.",
        votes=[-1],
        corrections=["Mail ops@example.org"],
    )
    out = tmp_path / "exports"

    summary = export(store, fmt, out, mask, style)

    text = summary.path.read_text(encoding="utf-8")
    for secret in ("help@example.com", "555 2671", "ops@example.org"):
        assert secret not in text
    assert "[EMAIL]" in text
    loaded = {"sft": lambda p: load_sft(p, "feedback"), "dpo": load_preferences, "kto": load_kto}[fmt](summary.path)
    assert len(loaded) == summary.rows == {"sft": 2, "dpo": 2, "kto": 3}[fmt]

    card = json.loads(summary.card_path.read_text(encoding="utf-8"))
    assert card["sha256"] == file_sha256(summary.path) == summary.sha256
    assert card["file"] == summary.path.name and summary.card_path.parent == out
    assert (card["format"], card["style"], card["rows"], card["interactions"]) == (fmt, style, summary.rows, 2)
    assert card["source"] == str(store.path) and card["created_at"] == "2025-03-01T12:00:00+00:00"
    assert "near_identical_jaccard" in card["rules"]
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []  # no temporary files left

    info = json.loads((out / "dataset_info.json").read_text()) if summary.info_path else {}
    if fmt == "sft" or style == "llamafactory":
        assert info[summary.path.stem] == card["llamafactory"]
        assert info[summary.path.stem]["file_name"] == summary.path.name
    else:
        assert summary.info_path is None and card["llamafactory"] is None


def test_default_mask_is_the_guardrails_pii_rail(store: FeedbackStore, tmp_path: Path) -> None:
    add(store, "My card?", "It is 4111 1111 1111 1111.", votes=[1])
    summary = export_feedback(store, "sft", tmp_path / "out")
    assert sft_pairs(summary) == [("My card?", "It is [CARD].")]


def test_duplicates_removed_keep_the_oldest(store: FeedbackStore, tmp_path: Path, mask: Mask) -> None:
    add(store, "What is LoRA?", "Low-rank adapters.", votes=[1])
    add(store, "what is LoRA", "low-rank adapters", votes=[1, 1])
    add(store, "What is LoRA?!", "Low-rank  adapters!", corrections=["Low-rank adapters."])
    add(store, "What is LoRA?", "Low-rank adapters 3.5.", votes=[1])  # different text: kept

    summary = export(store, "sft", tmp_path / "out", mask)

    assert sft_pairs(summary) == [("What is LoRA?", "Low-rank adapters."), ("What is LoRA?", "Low-rank adapters 3.5.")]
    assert summary.duplicates_removed == 2
    assert json.loads(summary.card_path.read_text())["duplicates_removed"] == 2


@pytest.mark.parametrize(
    ("setup", "fmt", "fragments"),
    [
        ([], "sft", ["holds no interactions yet", "SFT needs"]),
        ([("Q?", "A.", [], [])], "kto", ["none of its 1 interactions", "1 without a rating or correction"]),
        ([("Q?", "A.", [1], [])], "dpo", ["1 of its 1 interactions carry feedback", "DPO needs a 👎 answer"]),
        ([("Q?", "A.", [-1], [])], "sft", ["no SFT rows", "SFT needs 👍 answers or corrections"]),
    ],
)
def test_empty_export_says_why_and_writes_nothing(
    store: FeedbackStore, tmp_path: Path, mask: Mask, setup: list[Any], fmt: str, fragments: list[str]
) -> None:
    for question, answer, votes, corrections in setup:
        add(store, question, answer, votes, corrections)
    out = tmp_path / "exports"
    with pytest.raises(DomainbotError, match=r"^Nothing to export") as caught:
        export(store, fmt, out, mask)
    for fragment in fragments:
        assert fragment in str(caught.value)
    assert not out.exists()


def test_dataset_info_keeps_other_entries_and_a_broken_one_stops_the_export(
    store: FeedbackStore, tmp_path: Path, mask: Mask
) -> None:
    add(store, "Q?", "A.", votes=[1])
    out = tmp_path / "exports"
    out.mkdir()
    info = out / "dataset_info.json"
    info.write_text(json.dumps({"mine": {"file_name": "mine.json"}}))
    summary = export(store, "sft", out, mask)
    assert set(json.loads(info.read_text())) == {"mine", summary.path.stem}

    info.write_text("{not json")
    before = sorted(out.iterdir())
    with pytest.raises(DomainbotError, match=r"dataset_info\.json cannot be read"):
        export(store, "kto", out, mask, "llamafactory")
    assert sorted(out.iterdir()) == before and info.read_text() == "{not json"


def test_preview_counts_rows_without_writing(store: FeedbackStore, tmp_path: Path, mask: Mask) -> None:
    add(store, "Q?", "A.", votes=[1])
    add(store, "q", "B.", votes=[-1])
    add(store, "Other?", "C.")
    assert preview_feedback(store, mask) == {
        "interactions": 3,
        "used": 2,
        "skipped": {"without a rating or correction": 1},
        "rows": {"sft": 1, "dpo": 1, "kto": 2},
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("  Hello,   World! ", "hello world"),
        ("ＦＵＬＬ　width？", "full width"),
        ("Is 3.5 > 35?", "is 3.5 > 35"),
        ("비밀번호는 어떻게 바꾸나요?", "비밀번호는 어떻게 바꾸나요"),
        ("?!", ""),
    ],
)
def test_normalise(text: str, expected: str) -> None:
    assert normalise(text) == expected


def _brute_force_groups(questions: list[str], threshold: Fraction) -> set[frozenset[str]]:
    keys = sorted({normalise(q) for q in questions})
    groups = {key: {key} for key in keys}
    for a in keys:
        for b in keys:
            wa, wb = set(a.split()), set(b.split())
            if a < b and wa | wb and Fraction(len(wa & wb), len(wa | wb)) >= threshold and groups[a] is not groups[b]:
                merged = groups[a] | groups[b]
                for key in merged:
                    groups[key] = merged
    return {frozenset(g) for g in groups.values()}


@pytest.mark.parametrize("threshold", [Fraction(4, 5), Fraction(1, 2), Fraction(2, 3)])
def test_question_groups_match_all_pairs_comparison(threshold: Fraction) -> None:
    rng = random.Random(7)
    vocabulary = [f"w{i}" for i in range(12)]
    questions = [" ".join(rng.sample(vocabulary, rng.randint(1, 7))) for _ in range(300)]
    ids = question_groups(questions, threshold)
    found: dict[int, set[str]] = {}
    for key, group in ids.items():
        found.setdefault(group, set()).add(key)
    expected = _brute_force_groups(questions, threshold)
    assert {frozenset(g) for g in found.values()} == expected
    assert len(expected) < len(ids)  # the sample does merge some questions


def test_unwritable_destination_is_one_clear_error(store: FeedbackStore, tmp_path: Path, mask: Mask) -> None:
    add(store, "Q?", "A.", votes=[1])
    occupied = tmp_path / "a-file"
    occupied.write_text("not a folder")
    with pytest.raises(DomainbotError, match=r"Cannot write the export to .*a-file .*choose another with --out"):
        export(store, "sft", occupied, mask)
    assert occupied.read_text() == "not a folder"


def test_rows_keep_the_prompt_the_bot_built_and_learn_only_its_answer(
    store: FeedbackStore, tmp_path: Path, mask: Mask
) -> None:
    prompt = [
        {"role": "system", "content": "Answer from the passages. Write to kim@example.com for help."},
        {"role": "user", "content": "How do I rate?"},
        {"role": "assistant", "content": "Press a button."},
        {"role": "user", "content": "Passages: [1] Tea grows in Assam.\n\nQuestion: Where does tea grow?"},
    ]
    record = InteractionRecord(question="Where does tea grow?", answer="In France.", model="m", prompt=prompt)
    logged = store.log(record)
    store.rate(logged, -1, rater_id="1")
    store.correct(logged, "In Assam [1].", rater_id="1")
    summary = export_feedback(store, "sft", tmp_path / "out", mask=mask)
    (example,) = load_sft(summary.path, "feedback")
    assert [m.role for m in example.messages] == ["system", "user", "assistant", "user", "assistant"]
    assert example.messages[-1].content == "In Assam [1]." and example.last_turn_only
    assert "kim@example.com" not in summary.path.read_text(encoding="utf-8")  # the logged prompt is masked too
    (pair,) = load_preferences(export_feedback(store, "dpo", tmp_path / "dpo", mask=mask).path)
    assert pair.prompt[-1].content.endswith("Where does tea grow?") and pair.rejected == "In France."
