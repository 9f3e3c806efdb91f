"""GSM8K: how many math word problems the router sends to computation, and how often the final number is
right once the local evaluator has checked (and corrected) the arithmetic the answer states."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bot.errors import DomainbotError
from knowledge.calculator import check_equations, correct_equations, final_number, route

COMPUTATION_KINDS = ("arithmetic", "word_problem", "lookup")
_ANNOTATION = re.compile(r"<<([^<>]+=[^<>]+)>>")


@dataclass(frozen=True)
class Problem:
    question: str
    rationale: str
    answer: float


@dataclass
class GsmReport:
    problems: int
    routed: dict[str, int]
    routed_to_computation: int
    # The evaluator on the reference solutions: every `<<a op b=c>>` it re-computes should agree.
    reference_equations: int
    reference_equations_confirmed: int
    answered: int = 0
    model_final_correct: int = 0
    verified_final_correct: int = 0
    seconds_per_answer: float = 0.0
    failures: list[dict[str, object]] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["computation_share"] = self.routed_to_computation / self.problems if self.problems else 0.0
        if self.answered:
            data["model_accuracy"] = self.model_final_correct / self.answered
            data["verified_accuracy"] = self.verified_final_correct / self.answered
        return data


def load_problems(path: Path) -> list[Problem]:
    problems = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DomainbotError(f"GSM8K file {path} cannot be read ({exc}). Expected gsm8k_test.jsonl.") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            rationale, _, gold = row["answer"].rpartition("####")
            problems.append(Problem(row["question"], rationale, float(gold.strip().replace(",", ""))))
        except (ValueError, KeyError, AttributeError) as exc:
            raise DomainbotError(
                f"GSM8K file {path}, line {number}: expected question and an answer ending '#### N' ({exc})."
            ) from None
    return problems


def verified_final(text: str) -> float | None:
    """The answer's final number after the evaluator's corrections: a wrong equation's result is replaced,
    also where the answer repeats that wrong result as its final number."""
    corrected = correct_equations(text)
    final = final_number(corrected)
    wrong = {c.stated: c.computed for c in check_equations(text) if not c.correct}
    return wrong.get(final, final) if final is not None else None


def _same(a: float | None, b: float) -> bool:
    return a is not None and abs(a - b) <= 1e-6 * max(1.0, abs(b))


def evaluate(problems: list[Problem], answer: Callable[[str], str] | None = None, limit: int = 0) -> GsmReport:
    """Route every problem; with `answer` (question -> the model's text), also answer the first `limit`."""
    routed = Counter(route(p.question).kind for p in problems)
    # The reference solutions annotate each step as <<a op b=c>>; the evaluator re-checks every one.
    reference = [c for p in problems for m in _ANNOTATION.finditer(p.rationale) for c in check_equations(m.group(1))]
    report = GsmReport(
        problems=len(problems),
        routed=dict(routed),
        routed_to_computation=sum(routed[k] for k in COMPUTATION_KINDS),
        reference_equations=len(reference),
        reference_equations_confirmed=sum(c.correct for c in reference),
    )
    if answer is None or limit <= 0:
        return report
    started = time.perf_counter()
    for problem in problems[:limit]:
        text = answer(problem.question)
        model_number, verified_number = final_number(text), verified_final(text)
        report.answered += 1
        report.model_final_correct += _same(model_number, problem.answer)
        report.verified_final_correct += _same(verified_number, problem.answer)
        if not _same(verified_number, problem.answer) and len(report.failures) < 20:
            report.failures.append(
                {"question": problem.question[:160], "expected": problem.answer, "got": verified_number}
            )
    report.seconds_per_answer = (time.perf_counter() - started) / report.answered
    return report
