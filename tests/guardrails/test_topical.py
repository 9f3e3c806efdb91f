"""Topical scope: off-topic questions are redirected, warned about, or allowed, as the policy says."""

from __future__ import annotations

import pytest

from guardrails import Guardrails, Policy
from guardrails.policy import TopicalConfig

COOKING = [
    "How long should I boil an egg?",
    "What can I cook with chicken and rice?",
    "How do I make a sourdough starter?",
    "What temperature do I roast vegetables at?",
    "How do I stop pasta from sticking together?",
    "김치찌개 끓이는 방법",
]


def _guard(real_guard: Guardrails, policy: Policy, mode: str) -> Guardrails:
    topical = TopicalConfig.model_validate(
        {
            **policy.topical.model_dump(),
            "mode": mode,
            "domain": "cooking",
            "examples": COOKING,
            "threshold": 0.3,
        }
    )
    return Guardrails(policy.model_copy(update={"topical": topical}), real_guard.embedder)


def test_redirect_mode_declines_off_topic_questions_politely(real_guard: Guardrails, policy: Policy) -> None:
    guard = _guard(real_guard, policy, "redirect")
    verdict = guard.check_input("Who won the football world cup in 1998?")
    assert verdict.action == "blocked" and verdict.rail == "topical" and verdict.category == "off_topic"
    assert verdict.message == policy.topical.message.en
    assert guard.check_input("How do I roast a whole chicken?").allowed
    assert guard.check_input("hello!").allowed


def test_warn_mode_answers_with_a_note(real_guard: Guardrails, policy: Policy) -> None:
    verdict = _guard(real_guard, policy, "warn").check_input("Explain quantum entanglement to me")
    assert verdict.allowed and verdict.rule == "topical.warn" and verdict.message


def test_allow_mode_and_default_policy_skip_the_check(real_guard: Guardrails, policy: Policy) -> None:
    assert _guard(real_guard, policy, "allow").check_input("Explain quantum entanglement to me").rail is None
    assert real_guard.check_input("Explain quantum entanglement to me").rail is None


@pytest.mark.parametrize("mode", ["warn", "redirect"])
def test_load_overrides_the_mode(mode: str) -> None:
    assert Guardrails.load(topical_mode=mode).policy.topical.mode == mode  # type: ignore[arg-type]
