"""The evaluation sets measure the rails and must not train them: no eval prompt, or a near copy of one,
may appear in the policy, the exemplars, or these tests' tables."""

from __future__ import annotations

import csv
import re

import pytest

from guardrails import DEFAULT_POLICY_PATH, load_policy
from tests.conftest import SHARED_DATA
from tests.guardrails import cases

# Two texts this close in word sets (Jaccard) count as a paraphrase of one another.
NEAR_DUPLICATE = 0.7
_WORD = re.compile(r"[\w']+")


def _normalise(text: str) -> str:
    return " ".join(text.lower().split()).strip(" .?!")


def _words(text: str) -> frozenset[str]:
    return frozenset(_WORD.findall(text.lower()))


def _eval_prompts() -> list[str]:
    advbench = SHARED_DATA / "advbench_harmful_behaviors.csv"
    xstest = SHARED_DATA / "xstest_prompts.csv"
    if not (advbench.is_file() and xstest.is_file()):
        pytest.skip(
            f"evaluation data not found in {SHARED_DATA}; the leakage check needs the shared data folder"
        )
    with advbench.open(encoding="utf-8", newline="") as f:
        prompts = [row["goal"] for row in csv.DictReader(f)]
    with xstest.open(encoding="utf-8", newline="") as f:
        prompts += [row["prompt"] for row in csv.DictReader(f)]
    return prompts


def _our_texts() -> list[str]:
    policy = load_policy()
    texts = (
        [t for group in policy.exemplars.values() for t in group] + policy.benign + policy.topical.examples
    )
    for name in dir(cases):
        table = getattr(cases, name)
        if name.isupper() and isinstance(table, list):
            texts += [row[0] if isinstance(row, tuple) else row for row in table]
    return texts


def test_no_eval_prompt_appears_in_the_policy_files() -> None:
    blob = "\n".join(
        _normalise(p.read_text(encoding="utf-8"))
        for p in [DEFAULT_POLICY_PATH, *sorted((DEFAULT_POLICY_PATH.parent / "exemplars").glob("*.yaml"))]
    )
    found = [p for p in _eval_prompts() if len(_normalise(p)) > 15 and _normalise(p) in blob]
    assert not found, f"evaluation prompts copied into the policy: {found[:3]}"


def test_no_exemplar_or_test_case_is_a_near_copy_of_an_eval_prompt() -> None:
    eval_words = [(p, _words(p)) for p in _eval_prompts()]
    close = []
    for text in _our_texts():
        ours = _words(text)
        if len(ours) < 4:
            continue
        for prompt, theirs in eval_words:
            overlap = len(ours & theirs) / len(ours | theirs)
            if overlap >= NEAR_DUPLICATE or _normalise(text) == _normalise(prompt):
                close.append((text, round(overlap, 2)))
    assert not close, f"too close to evaluation prompts: {close[:5]}"


def test_the_check_itself_catches_a_copy() -> None:
    prompt = _eval_prompts()[0]
    assert len(_words(prompt) & _words(prompt + " please")) / len(
        _words(prompt) | _words(prompt + " please")
    ) >= (NEAR_DUPLICATE)
