"""Answer quality on a set of questions about the knowledge base: grounded, cited, correct, honest, and fast.

Each question names the source (and section) that answers it and phrases a correct answer contains; a
question marked `"covered": false` has no answer in the knowledge base, and the honest reply says so. The
default set is about the sample pack, so it measures the bot as it starts on a fresh data folder.

    {"question": "How do I rate an answer?", "source": "feedback-and-training.md", "section": "Rating an answer",
     "expect": ["thumbs"]}
    {"question": "How much does a subscription cost?", "covered": false}
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from bot.errors import DomainbotError
from bot.prompting import load_jsonl_models
from knowledge.inform import is_abstention

if TYPE_CHECKING:
    from bot.pipeline import Answer

SAMPLE_PACK_QUESTIONS = Path(__file__).resolve().parent.parent / "knowledge" / "sample_pack_questions.jsonl"


class EvalQuestion(BaseModel):
    question: str = Field(min_length=1)
    covered: bool = True
    source: str | None = Field(None, description="The end of the answering document's source name.")
    section: str | None = Field(None, description="Text of the answering section's heading.")
    expect: list[str] = Field(default_factory=list, description="A correct answer contains one of these.")


@dataclass(frozen=True)
class AnswerGrade:
    question: str
    covered: bool
    path: str
    text: str
    seconds: float
    # Covered questions: every claim kept in the text is one Inform found supported (and there is one).
    grounded: bool = False
    cites_source: bool = False
    cites_section: bool = False
    correct: bool = False
    # Questions the knowledge base does not cover: the reply says it could not find the answer.
    honest: bool = False


@dataclass
class AnswerReport:
    grades: list[AnswerGrade]

    def summary(self) -> dict[str, Any]:
        covered = [g for g in self.grades if g.covered]
        uncovered = [g for g in self.grades if not g.covered]
        seconds = sorted(g.seconds for g in self.grades)

        def share(grades: Sequence[AnswerGrade], field: str) -> float:
            return round(sum(getattr(g, field) for g in grades) / len(grades), 3) if grades else 0.0

        return {
            "questions": len(self.grades),
            "covered": len(covered),
            "grounded": share(covered, "grounded"),
            "cites_source": share(covered, "cites_source"),
            "cites_section": share(covered, "cites_section"),
            "correct": share(covered, "correct"),
            "not_covered": len(uncovered),
            "honest": share(uncovered, "honest"),
            "paths": dict(Counter(g.path for g in self.grades)),
            "seconds_p50": round(statistics.median(seconds), 2) if seconds else 0.0,
            "seconds_p90": round(seconds[int(0.9 * (len(seconds) - 1))], 2) if seconds else 0.0,
            "seconds_max": round(seconds[-1], 2) if seconds else 0.0,
        }

    def to_json(self) -> dict[str, Any]:
        return {**self.summary(), "answers": [asdict(g) for g in self.grades]}


def load_questions(path: Path | None = None) -> list[EvalQuestion]:
    path = path or SAMPLE_PACK_QUESTIONS
    expected = "an object with question and either source, section, expect or covered: false"
    questions = load_jsonl_models(path, EvalQuestion, "Question file", expected)
    if not questions:
        raise DomainbotError(f"Question file {path} holds no questions. Expected one JSON object per line.")
    return questions


def grade(item: EvalQuestion, answer: Answer) -> AnswerGrade:
    """How one answer did: the checks a reader of the reply would make, from the Answer alone."""
    seconds = answer.timings.get("total", 0.0)
    if not item.covered:
        return AnswerGrade(item.question, False, answer.path, answer.text, seconds, honest=is_abstention(answer.text))
    kept = [c for c in answer.claims if c.kept and c.verdict != "skipped"]
    answered = answer.path in ("generated", "extractive")
    grounded = answered and bool(kept) and all(c.verdict == "supported" for c in kept)
    cited = [c for c in answer.citations if item.source and c.source.endswith(item.source)] if answered else []
    text = answer.text.casefold()
    return AnswerGrade(
        item.question,
        True,
        answer.path,
        answer.text,
        seconds,
        grounded=grounded,
        cites_source=bool(cited),
        cites_section=any(item.section is None or item.section in c.location for c in cited),
        correct=answered and any(phrase.casefold() in text for phrase in item.expect),
    )


def evaluate(questions: Sequence[EvalQuestion], answer: Callable[[str], Answer]) -> AnswerReport:
    return AnswerReport([grade(item, answer(item.question)) for item in questions])
