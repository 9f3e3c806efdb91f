import json
from pathlib import Path

import pytest

from bot.errors import DomainbotError
from bot.gsm8k import evaluate, load_problems, verified_final
from tests.helpers import run_cli

PROBLEMS = [
    {
        "question": "Tom has 3 boxes with 4 pens each. How many pens does he have in total?",
        "answer": "3 boxes of 4 pens is 3*4=<<3*4=12>>12 pens.\n#### 12",
    },
    {
        "question": "A shop sells 48 clips in April and half as many in May. How many clips altogether?",
        "answer": "In May 48/2=<<48/2=24>>24. Total 48+24=<<48+24=72>>72.\n#### 72",
    },
    {"question": "What is the capital of France?", "answer": "Paris is not a number.\n#### 0"},
]


@pytest.fixture()
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "gsm8k.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in PROBLEMS) + "\n", encoding="utf-8")
    return path


def test_routing_and_the_reference_equations(data_file: Path) -> None:
    report = evaluate(load_problems(data_file))
    assert report.routed == {"word_problem": 2, "none": 1}
    assert report.routed_to_computation == 2
    assert (report.reference_equations, report.reference_equations_confirmed) == (3, 3)
    assert report.answered == 0


def test_answers_are_scored_after_the_evaluator_corrects_them(data_file: Path) -> None:
    replies = {
        PROBLEMS[0]["question"]: "3 * 4 = 12 pens.",
        PROBLEMS[1]["question"]: "In May 48 / 2 = 24, so 48 + 24 = 70. He has 70 clips.",
    }
    report = evaluate(load_problems(data_file), lambda q: replies[q], limit=2)
    assert (report.answered, report.model_final_correct, report.verified_final_correct) == (2, 1, 2)
    data = report.to_json()
    assert data["model_accuracy"] == 0.5 and data["verified_accuracy"] == 1.0


@pytest.mark.parametrize(
    ("text", "number"),
    [("48 + 24 = 70, so 70 clips.", 72), ("9 * 2 = 18 dollars", 18), ("It is 5.", 5), ("no number", None)],
)
def test_verified_final(text: str, number: float | None) -> None:
    assert verified_final(text) == number


def test_bad_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": "q", "answer": "no marker"}\n', encoding="utf-8")
    with pytest.raises(DomainbotError, match="line 1"):
        load_problems(path)


def test_cli_routing_only(data_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "eval", "gsm8k", "--data", str(data_file), "--limit", "0", "--json")
    report = json.loads(out)
    assert code == 0 and report["routed_to_computation"] == 2 and report["computation_share"] == pytest.approx(2 / 3)
