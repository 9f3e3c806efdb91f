"""A safe local evaluator for plain arithmetic, and the router that spots computational questions.

Expressions are parsed with `ast` and only numbers, + - * / // % **, parentheses and a few named functions and
constants are evaluated; nothing is ever passed to `eval`. Sizes are bounded so a question cannot make the
bot compute for long (a huge power, say).
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

MAX_EXPONENT = 1000
MAX_MAGNITUDE = 1e300
MAX_EXPRESSION_CHARS = 300
MAX_WORDS_AROUND_EXPRESSION = 8

_BINARY: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_FUNCTIONS: dict[str, Callable[..., float]] = {
    "sqrt": math.sqrt,
    "abs": abs,
    "round": round,
    "log": math.log10,
    "ln": math.log,
    "exp": math.exp,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
}
_CONSTANTS = {"pi": math.pi, "e": math.e}


class CalculationError(ValueError):
    """The text is not an arithmetic expression this evaluator accepts, or its value is out of bounds."""


def evaluate(expression: str) -> float:
    """The value of an arithmetic expression such as '(12 + 3) * 4 / 5' or 'sqrt(2) ** 2'."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise CalculationError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError:
        raise CalculationError(f"not an arithmetic expression: {expression!r}") from None
    value = _eval(tree.body)
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        raise CalculationError("the result is not a finite number")
    return value


def _eval(node: ast.AST) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd | ast.USub):
        operand = _eval(node.operand)
        return operand if isinstance(node.op, ast.UAdd) else -operand
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            raise CalculationError(f"exponent {right} is larger than {MAX_EXPONENT}")
        try:
            value = _BINARY[type(node.op)](left, right)
        except ZeroDivisionError:
            raise CalculationError("division by zero") from None
        except OverflowError:
            raise CalculationError("the result is too large") from None
        if isinstance(value, complex):
            raise CalculationError("the result is not a real number")
        if abs(value) > MAX_MAGNITUDE:
            raise CalculationError("the result is too large")
        return value
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and not node.keywords
        and 1 <= len(node.args) <= 2
    ):
        try:
            return float(_FUNCTIONS[node.func.id](*(_eval(arg) for arg in node.args)))
        except (ValueError, OverflowError) as exc:
            raise CalculationError(f"{node.func.id}: {exc}") from None
    raise CalculationError(f"unsupported element in the expression: {ast.dump(node)[:60]}")


def format_number(value: float) -> str:
    """Integers without a decimal point; other values with up to 10 significant digits."""
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.10g}"


# Words people use for operators, in English and Korean, turned into symbols before parsing.
_WORDS = [
    (r"\bmultiplied by\b|\btimes\b|×|곱하기", "*"),
    (r"\bdivided by\b|\bover\b|÷|나누기", "/"),
    (r"\bplus\b|더하기", "+"),
    (r"\bminus\b|빼기", "-"),
    (r"\bto the power of\b|\^", "**"),
    (r"\bsquared\b", "**2"),
    (r"\bcubed\b", "**3"),
    (r"\bsquare root of\b|√", "sqrt "),
    (r"(\d),(\d{3})\b", r"\1\2"),  # thousands separators
    (r"sqrt\s+(\d+(?:\.\d+)?)", r"sqrt(\1)"),
]
_PERCENT_OF = re.compile(r"(\d+(?:\.\d+)?)\s*(?:%|percent)\s+of\s+(\d+(?:\.\d+)?)", re.IGNORECASE)
_CANDIDATE = re.compile(r"[\d(][\d\s.+\-*/%()]*[\d)]|sqrt\s*\(?\s*[\d.]+\s*\)?")
_HAS_OPERATOR = re.compile(r"\d\s*(?:\*\*|[+\-*/%])\s*[\d(]|sqrt")
_LOOKUP_CUES = re.compile(
    r"\b(convert|how many (?:days|hours|minutes|seconds|weeks)|in (?:km|miles|kg|pounds|celsius|fahrenheit)|"
    r"population of|distance (?:from|between)|what day|what time|exchange rate|boiling point|melting point|"
    r"speed of light|molar mass|calories in|integral|derivative|solve)\b|환산|변환|며칠|몇 ?일",
    re.IGNORECASE,
)


_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:,\d{3})*(?:\.\d+)?")
_NUMBER_WORDS = re.compile(
    r"\b(one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|fifty|hundred|"
    r"thousand|half|twice|double|triple|quarter|third|dozen)\b|하나|둘|셋|넷|다섯|절반|두 배",
    re.IGNORECASE,
)
_QUANTITY_CUES = re.compile(
    r"\b(how (?:many|much|long|far|old)|what is the (?:total|sum|difference|product|average)|in total|"
    r"altogether|remain|left|per|each|cost|earn|spend|pay)\b|\$|얼마|몇",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Computation:
    """What the router made of a question.

    kind: "arithmetic" (an explicit expression the local evaluator answers), "word_problem" (quantities to
    combine: the answer's own equations get checked), "lookup" (facts or conversions for WolframAlpha), "none".
    """

    kind: str
    expression: str | None = None
    value: float | None = None


def route(question: str) -> Computation:
    """Spot plain arithmetic (answered locally) and factual or computational lookups (for WolframAlpha)."""
    text = question.lower()
    text = _PERCENT_OF.sub(lambda m: f"({m.group(1)} / 100 * {m.group(2)})", text)
    for pattern, replacement in _WORDS:
        text = re.sub(pattern, replacement, text)
    best: Computation | None = None
    for match in _CANDIDATE.finditer(text):
        candidate = match.group(0).strip()
        if not _HAS_OPERATOR.search(candidate):
            continue
        try:
            value = evaluate(_balance(candidate))
        except CalculationError:
            continue
        if best is None or len(candidate) > len(best.expression or ""):
            best = Computation("arithmetic", _balance(candidate), value)
    # An expression inside a longer story ("works 9-5", "ages 3-4") is not the question being asked.
    if best is not None and _words_outside(text, best.expression or "") <= MAX_WORDS_AROUND_EXPRESSION:
        return best
    if _LOOKUP_CUES.search(question):
        return Computation("lookup")
    quantities = len(_NUMBER.findall(question)) + len(_NUMBER_WORDS.findall(question))
    if quantities >= 2 and _QUANTITY_CUES.search(question):
        return Computation("word_problem")
    return Computation("none")


@dataclass(frozen=True)
class EquationCheck:
    """One 'expression = number' statement found in a text, and whether its arithmetic holds."""

    expression: str
    stated: float
    computed: float
    # Where the stated result sits in the checked text, so a wrong one can be replaced.
    span: tuple[int, int] = (0, 0)

    @property
    def correct(self) -> bool:
        return math.isclose(self.stated, self.computed, rel_tol=1e-6, abs_tol=1e-6)


_EQUATION = re.compile(r"((?:(?<![\w)])-)?(?:[\d.$(][\d\s.,$+\-*/x×÷()]*?[\d)]))\s*=\s*\$?(-?\d[\d,]*(?:\.\d+)?)")


def check_equations(text: str) -> list[EquationCheck]:
    """Every 'a op b = c' in `text` with an operator, evaluated locally."""
    checks = []
    for match in _EQUATION.finditer(text):
        expression = match.group(1).replace("$", "").replace(",", "").replace("×", "*").replace("÷", "/")
        expression = re.sub(r"(?<=\d)\s*x\s*(?=[\d(])", "*", expression)
        if not _HAS_OPERATOR.search(expression):
            continue
        try:
            computed = evaluate(_balance(expression))
        except CalculationError:
            continue
        stated = float(match.group(2).replace(",", ""))
        checks.append(EquationCheck(expression.strip(), stated, computed, match.span(2)))
    return checks


def correct_equations(text: str) -> str:
    """`text` with the result of every wrong 'a op b = c' replaced by the evaluator's value."""
    for check in sorted(check_equations(text), key=lambda c: c.span[0], reverse=True):
        if not check.correct:
            start, end = check.span
            text = text[:start] + format_number(check.computed) + text[end:]
    return text


def final_number(text: str) -> float | None:
    """The last number in a text (answers usually end with their result), or None."""
    numbers = _NUMBER.findall(text)
    return float(numbers[-1].replace(",", "")) if numbers else None


def _words_outside(text: str, expression: str) -> int:
    rest = text.replace(expression, " ", 1) if expression in text else text
    return len(re.findall(r"[^\W\d_]+", rest))


def _balance(expression: str) -> str:
    """Drop unmatched parentheses a regex match may have cut through."""
    depth, kept = 0, []
    for char in expression:
        if char == "(":
            depth += 1
        elif char == ")":
            if depth == 0:
                continue
            depth -= 1
        kept.append(char)
    return "".join(kept) + ")" * depth
