import pytest

from knowledge.calculator import CalculationError, check_equations, evaluate, final_number, format_number, route


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("7 / 2", 3.5),
        ("7 // 2", 3),
        ("-2 ** 2", -4),
        ("2 ** 10", 1024),
        ("sqrt(16) + abs(-3)", 7),
        ("round(pi, 2)", 3.14),
    ],
)
def test_evaluates_arithmetic(expression: str, value: float) -> None:
    assert evaluate(expression) == pytest.approx(value)


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("__import__('os').system('echo hi')", "unsupported"),
        ("open('/etc/passwd')", "unsupported"),
        ("(1).__class__", "unsupported"),
        ("x + 1", "unsupported"),
        ("1 / 0", "division by zero"),
        ("9 ** 99999", "exponent"),
        ("10.0 ** 400", "too large"),
        ("sqrt(-1)", "sqrt"),
        ("1 +", "not an arithmetic expression"),
        ("1" * 400, "longer than"),
        ("True + 1", "unsupported"),
    ],
)
def test_refuses_anything_else(expression: str, reason: str) -> None:
    with pytest.raises(CalculationError, match=reason):
        evaluate(expression)


@pytest.mark.parametrize(
    ("question", "kind", "value"),
    [
        ("What is 12 times 7?", "arithmetic", 84),
        ("What is (3+4)*2?", "arithmetic", 14),
        ("calculate 2^10", "arithmetic", 1024),
        ("What is 15% of 80?", "arithmetic", 12),
        ("what is the square root of 144", "arithmetic", 12),
        ("17 곱하기 3 은?", "arithmetic", 51),
        ("Please tell me what 1,234 + 5 is", "arithmetic", 1239),
        ("Convert 5 km to miles", "lookup", None),
        ("How many days are there between March 3 and May 9?", "lookup", None),
        (
            "Tom has 3 boxes with twelve pens each and gives half to Ann. How many pens does he have left?",
            "word_problem",
            None,
        ),
        (
            "She works 9-5 on weekdays at a shop, and sells 4 cakes per hour. How many cakes a day?",
            "word_problem",
            None,
        ),
        ("What is the capital of France?", "none", None),
        ("How do I add documents to the knowledge base?", "none", None),
    ],
)
def test_router(question: str, kind: str, value: float | None) -> None:
    computation = route(question)
    assert computation.kind == kind
    if value is not None:
        assert computation.value == pytest.approx(value)


def test_checks_the_equations_an_answer_states() -> None:
    checks = check_equations("In May she sold 48 / 2 = 24 clips, so 48 + 24 = 72. Pens cost $3 x 4 = $13.")
    assert [(c.expression, c.correct) for c in checks] == [("48 / 2", True), ("48 + 24", True), ("3*4", False)]
    assert checks[2].computed == 12
    assert check_equations("The year 2024 = a leap year; no arithmetic here.") == []


def test_final_number_and_formatting() -> None:
    assert final_number("so the answer is 1,234.5 dollars.") == 1234.5
    assert final_number("no numbers") is None
    assert (format_number(12.0), format_number(0.1 + 0.2), format_number(-3)) == ("12", "0.3", "-3")
