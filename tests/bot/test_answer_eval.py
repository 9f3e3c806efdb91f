import re
from pathlib import Path

import pytest

from bot.answer_eval import EvalQuestion, evaluate, grade, load_questions
from bot.errors import DomainbotError
from bot.pipeline import NOT_FOUND, Answer, Citation, ClaimResult
from knowledge import sample_pack_dir


def test_shipped_questions_match_the_sample_pack() -> None:
    """Each covered question's section is a heading of its document, and the document states the answer."""
    questions = load_questions()
    covered = [q for q in questions if q.covered]
    assert len(covered) >= 20 and len(questions) - len(covered) >= 5
    for item in covered:
        assert item.source and item.section and item.expect, item.question
        document = (sample_pack_dir() / item.source).read_text(encoding="utf-8")
        assert item.section in re.findall(r"^#+ (.+)$", document, re.MULTILINE), item.question
        assert any(phrase.casefold() in document.casefold() for phrase in item.expect), item.question


def _answer(text: str, path: str, claims: list[tuple[str, bool]], cited: str = "") -> Answer:
    citations = [Citation(number=1, source=cited, location="§ Guide > Rating an answer", snippet="")] if cited else []
    return Answer(
        text=text,
        conversation_id="c",
        path=path,  # type: ignore[arg-type]
        claims=[ClaimResult(text="x", verdict=verdict, support=0.5, kept=kept) for verdict, kept in claims],
        citations=citations,
        timings={"total": 1.5},
    )


RATE = EvalQuestion(question="How do I rate?", source="guide.md", section="Rating an answer", expect=["thumbs"])


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        # grounded, cites the source and section, correct
        (_answer("Use thumbs up [1].", "extractive", [("unsupported", False), ("supported", True)], "pack/guide.md"),
         (True, True, True, True)),
        # an unsupported claim kept in the text is not grounded
        (_answer("Use thumbs up [1].", "generated", [("supported", True), ("unsupported", True)], "pack/guide.md"),
         (False, True, True, True)),
        # "not found" for a covered question answers nothing, whatever it lists
        (_answer(f"{NOT_FOUND} [1] thumbs", "not_found", [], "pack/guide.md"), (False, False, False, False)),
        (_answer("Stars.", "generated", [("supported", True)], "pack/other.md"), (True, False, False, False)),
    ],
)
def test_grades_of_covered_questions(answer: Answer, expected: tuple[bool, bool, bool, bool]) -> None:
    graded = grade(RATE, answer)
    assert (graded.grounded, graded.cites_source, graded.cites_section, graded.correct) == expected


def test_report_counts_honest_replies_and_latency() -> None:
    uncovered = EvalQuestion(question="Price?", covered=False)
    replies = iter(
        [
            _answer("Use thumbs up [1].", "generated", [("supported", True)], "pack/guide.md"),
            _answer(f"{NOT_FOUND} The closest passages are: ...", "not_found", []),
            _answer("It costs $5.", "generated", [("unsupported", True)]),
        ]
    )
    report = evaluate([RATE, uncovered, uncovered], lambda question: next(replies))
    summary = report.summary()
    assert (summary["covered"], summary["grounded"], summary["correct"]) == (1, 1.0, 1.0)
    assert (summary["not_covered"], summary["honest"]) == (2, 0.5)
    assert summary["paths"] == {"generated": 2, "not_found": 1} and summary["seconds_p50"] == 1.5


def test_bad_question_file_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text('{"question": "ok?"}\n{"source": "no question"}\n', encoding="utf-8")
    with pytest.raises(DomainbotError, match="line 2: expected an object with question"):
        load_questions(path)
    path.write_text("\n", encoding="utf-8")
    with pytest.raises(DomainbotError, match="holds no questions"):
        load_questions(path)
