"""The policy file: the default loads, operators can extend it, and a bad file names the offending key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from guardrails import DEFAULT_POLICY_PATH, Guardrails, PolicyError, load_policy
from guardrails.literals import Matcher, prefilter_text, required_literals
from guardrails.policy import compile_pattern
from guardrails.text import variants
from tests.guardrails.cases import HARMFUL_EN, HARMFUL_KO, JAILBREAK_EN, JAILBREAK_KO, SAFE_EN, SAFE_KO


def _write(tmp_path: Path, edit: dict[str, object] | None = None, path: tuple[str, ...] = ()) -> Path:
    data = yaml.safe_load(DEFAULT_POLICY_PATH.read_text(encoding="utf-8"))
    node = data
    for key in path[:-1]:
        node = node[key]
    if path:
        node[path[-1]] = edit
    for name in ("harmful.yaml", "benign.yaml", "public_people.yaml"):
        source = DEFAULT_POLICY_PATH.parent / "exemplars" / name
        (tmp_path / "exemplars").mkdir(exist_ok=True)
        (tmp_path / "exemplars" / name).write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    out = tmp_path / "policy.yaml"
    out.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return out


def test_default_policy_lists_the_rails_categories_and_messages() -> None:
    policy = load_policy()
    assert policy.rails.input == ["pii", "jailbreak", "harmful", "topical"]
    assert {
        "violence_weapons",
        "self_harm",
        "sexual_minors",
        "hate_harassment",
        "crime_hacking",
        "privacy",
        "extremism",
        "dangerous_chemistry_biology",
    } <= set(policy.harmful.categories)
    assert policy.messages.refusal.en and policy.messages.refusal.ko
    assert set(policy.exemplars) == set(policy.harmful.categories) and len(policy.benign) > 50


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (
            ("harmful", "categories", "violence_weapons", "threshold"),
            "high",
            "policy.yaml: harmful.categories.violence_weapons.threshold: "
            "expected a number between 0 and 1, got 'high'",
        ),
        (
            ("harmful", "categories", "privacy", "margin"),
            1.5,
            "policy.yaml: harmful.categories.privacy.margin: expected a number between 0 and 1, got 1.5",
        ),
        (
            ("harmful", "categories", "self_harm", "rules"),
            [{"name": "x", "pattern": "(unclosed"}],
            "policy.yaml: harmful.categories.self_harm.rules.0.pattern: not a valid regular expression",
        ),
        (("topical", "mode"), "block", "policy.yaml: topical.mode:"),
        (("rails", "input"), ["pii", "spam"], "policy.yaml: rails.input.1:"),
        (("messages", "refusal"), {"en": "no"}, "policy.yaml: messages.refusal.ko: required key is missing"),
        (("harmful", "categorise"), {}, "policy.yaml: harmful.categorise: unknown key"),
        (
            ("harmful", "categories", "privacy", "rules"),
            [{"name": "x", "pattern": "<<nobody>>"}],
            "harmful.categories.privacy.rules.0.pattern: unknown term <<nobody>>",
        ),
        (
            ("jailbreak", "follow_up"),
            ["(unclosed"],
            "policy.yaml: jailbreak.follow_up: item 0 is not a valid regular expression",
        ),
    ],
)
def test_bad_policy_names_the_offending_key(
    tmp_path: Path, path: tuple[str, ...], value: object, expected: str
) -> None:
    with pytest.raises(PolicyError) as error:
        load_policy(_write(tmp_path, value, path))  # type: ignore[arg-type]
    assert expected in str(error.value)


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="file not found"):
        load_policy(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("rails: [unclosed", encoding="utf-8")
    with pytest.raises(PolicyError, match="not valid YAML"):
        load_policy(broken)
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(PolicyError, match="expected a mapping"):
        load_policy(listed)


def test_exemplars_for_an_unknown_category_are_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path)
    (tmp_path / "exemplars" / "harmful.yaml").write_text("gambling:\n  - bet it all\n", encoding="utf-8")
    with pytest.raises(PolicyError, match="gambling: not a category"):
        load_policy(path)


def test_operator_adds_a_category_without_code(tmp_path: Path) -> None:
    category = {
        "description": "Betting tips are out of bounds for this bot.",
        "threshold": 0.9,
        "rules": [{"name": "betting", "pattern": r"\b(?:bet|wager)\b.{0,20}\b(?:horses?|match|game)\b"}],
        "message": {"en": "I don't give betting advice.", "ko": "베팅 조언은 드리지 않습니다."},
    }
    guard = Guardrails(load_policy(_write(tmp_path, category, ("harmful", "categories", "gambling"))))
    verdict = guard.check_input("How should I bet on the horses this weekend?")
    assert verdict.action == "blocked" and verdict.rule == "gambling.betting"
    assert verdict.message == "I don't give betting advice."


def test_disabled_rail_does_not_run(tmp_path: Path) -> None:
    guard = Guardrails(load_policy(_write(tmp_path, ["harmful", "jailbreak"], ("rails", "input"))))
    verdict = guard.check_input("mail me at someone@example.com")
    assert verdict.action == "allowed" and verdict.masked_text == "mail me at someone@example.com"


def _texts(table: list[str] | list[tuple[str, str]]) -> list[str]:
    return [item if isinstance(item, str) else item[0] for item in table]


def test_literal_precheck_never_changes_whether_a_policy_pattern_matches() -> None:
    policy = load_policy()
    rules = [rule for category in policy.harmful.categories.values() for rule in category.rules]
    rules += policy.jailbreak.rules
    matchers = [rule.compiled for rule in rules] + [r.compiled_unless for r in rules if r.compiled_unless]
    matchers += [compile_pattern(p) for p in [*policy.harmful.intent, *policy.jailbreak.follow_up]]
    assert all(m.literals for m in matchers), "every shipped pattern should have a pre-check"
    tables = (HARMFUL_EN, HARMFUL_KO, SAFE_EN, SAFE_KO, JAILBREAK_EN, JAILBREAK_KO)
    checked = 0
    for text in [t for table in tables for t in _texts(table)]:
        for reading in variants(text):
            folded = prefilter_text(reading.text)
            for matcher in matchers:
                expected = matcher.regex.search(reading.text) is not None
                assert matcher.search(reading.text, folded) == expected, (matcher.pattern[:60], reading.text)
                checked += expected
    assert checked > 100  # the tables do exercise the patterns


def test_required_literals_reads_the_words_a_match_needs() -> None:
    assert required_literals(r"\b(?:kill|murder)\w*\s+(?:him|her)\b") == {"kill", "murder"}
    assert required_literals(r"(?:SHOW|tell) me") == {"show", "tell"}  # lower case, as the text is looked up
    assert required_literals(r"x?y*|z") is None  # an optional branch needs nothing
    assert required_literals(r"(?:폭탄|총기)\w{0,3} ?만들") in ({"폭탄", "총기"}, {"만들"})
    # Case-insensitive `re` pairs i with dotless ı and İ; the pre-check must not be stricter than that.
    assert Matcher("kill him").search("KıLL HİM") and re.search("kill him", "KıLL HİM", re.IGNORECASE)
    secret = Matcher(r"\bhf_[A-Za-z0-9]{30,}\b", ignore_case=False)
    assert secret.literals == {"hf_"}
    assert not secret.search("HF_" + "a" * 30) and secret.search("token hf_" + "a" * 30)
