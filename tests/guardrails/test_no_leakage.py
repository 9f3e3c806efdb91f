"""The evaluation sets measure the rails and must not train them: no eval prompt, or a near copy of one,
may appear in the policy, the exemplars, these tests' tables or the project's own sets. The own sets are
measured in turn: none of their prompts may be copied into the exemplars either."""

from __future__ import annotations

import csv
import math
import re
from collections import Counter, defaultdict

import pytest

from guardrails import DEFAULT_POLICY_PATH, load_policy
from guardrails.evaluation import OWN_SETS_DIR, load_own_sets, with_fake_secrets
from guardrails.pii import find_pii
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


def _own_set_texts() -> list[str]:
    return [turn for eval_set in load_own_sets("all") for item in eval_set.items for turn in item.turns]


def _policy_texts() -> list[str]:
    policy = load_policy()
    return [t for group in policy.exemplars.values() for t in group] + policy.benign + policy.topical.examples


def _near_copies(ours: list[str], theirs: list[str]) -> list[tuple[str, float]]:
    """Each of our texts (of 4 words or more) that is a near copy of one of theirs, with the overlap of the first
    such one of theirs. Two word sets with a Jaccard overlap of at least t share a word among the first
    n - ceil(t * n) + 1 words of each (n its size, words in one fixed order, rarest first), so only the texts
    sharing such a word are compared: the same answer as comparing every pair, in a fraction of the time."""
    their_words = [_words(text) for text in theirs]
    frequency = Counter(word for words in their_words for word in words)

    def prefix(words: frozenset[str]) -> list[str]:
        kept = len(words) - math.ceil(NEAR_DUPLICATE * len(words) - 1e-9) + 1
        return sorted(words, key=lambda word: (frequency[word], word))[:kept]

    sharing: dict[str, list[int]] = defaultdict(list)
    for index, words in enumerate(their_words):
        for word in prefix(words):
            sharing[word].append(index)
    close = []
    for text in ours:
        words = _words(text)
        if len(words) < 4:
            continue
        for index in sorted({i for word in prefix(words) for i in sharing.get(word, ())}):
            other_words = their_words[index]
            overlap = len(words & other_words) / len(words | other_words)
            if overlap >= NEAR_DUPLICATE:
                close.append((text, round(overlap, 2)))
                break
    return close


def _our_texts() -> list[str]:
    texts = _policy_texts() + _own_set_texts()
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


def test_no_exemplar_test_case_or_own_set_prompt_is_a_near_copy_of_an_eval_prompt() -> None:
    close = _near_copies(_our_texts(), _eval_prompts())
    assert not close, f"too close to evaluation prompts: {close[:5]}"


def test_the_own_sets_exist_and_no_exemplar_is_a_near_copy_of_one_of_their_prompts() -> None:
    own = _own_set_texts()
    assert len(own) >= 100, "the project's own evaluation sets are missing from guardrails/evalsets"
    close = _near_copies(_policy_texts(), own)
    assert not close, f"exemplars too close to own-set prompts: {close[:5]}"


def test_the_check_itself_catches_a_copy() -> None:
    prompt = _eval_prompts()[0]
    assert len(_words(prompt) & _words(prompt + " please")) / len(
        _words(prompt) | _words(prompt + " please")
    ) >= (NEAR_DUPLICATE)


def test_the_own_sets_hold_no_token_in_a_providers_format() -> None:
    """Secrets are placeholders built at load time (`<<fake PREFIX LENGTH>>`): no file in the repository
    holds a string that a secret scanner would take for a real token. Passwords stated in prose are words."""
    for path in sorted(OWN_SETS_DIR.glob("*.yaml")):
        raw = path.read_text(encoding="utf-8")
        tokens = [raw[s.start : s.end] for s in find_pii(raw, ["secret"]) if s.rule != "password"]
        assert not tokens, f"{path.name} holds token-shaped values: {tokens[:3]}"


def test_fake_secret_placeholders_are_built_in_the_providers_shape() -> None:
    built = with_fake_secrets("token <<fake hf_ 34>> and key <<fake-key RSA>> and <<fake 1234567890: 35>>")
    assert "<<" not in built and built.count("FAKE0EXAMPLE1") >= 3
    assert [s.rule for s in find_pii(built, ["secret"])] == [
        "huggingface_token",
        "private_key",
        "telegram_bot_token",
    ]
