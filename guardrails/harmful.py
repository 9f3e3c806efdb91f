"""Harmful requests: category rules, plus an embedding classifier over harmful and benign exemplars.

The classifier blocks a text when its nearest harmful exemplars (mean of the `neighbours` most similar)
reach the category's threshold *and* beat the nearest benign look-alikes by the category's margin, so a
question that merely shares words with a harmful one ("kill a process") stays closer to the benign side.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from guardrails.literals import Matcher, prefilter_text
from guardrails.names import PublicNames
from guardrails.policy import Category, HarmfulConfig, Rule, compile_pattern
from guardrails.text import Variant, fold
from guardrails.verdict import Finding
from knowledge.embedder import Embedder

# An `unless` excuses a match only when it is this close (characters either side): in a long message, "the
# history of" three paragraphs away does not excuse "how do I make sarin".
UNLESS_WINDOW = 200
# The reading in which possibly private names stand as the placeholder ("What is someone's address?").
NAMED = "named"
_SENTENCE_END = re.compile(r"[.!?。？！\n]+")


def rule_fires(rule: Rule, text: str, has_intent: bool, folded: str | None = None) -> bool:
    """`folded`: `prefilter_text(text)`, computed once per text by callers that try many rules."""
    if rule.needs_intent and not has_intent:
        return False
    unless = rule.compiled_unless
    if unless is None:
        return rule.compiled.search(text, folded)
    for match in rule.compiled.finditer(text, folded):
        if not unless.search(text, folded, *_context(text, match.start(), match.end())):
            return True
    return False


def _context(text: str, start: int, end: int) -> tuple[int, int]:
    """The sentence (or sentences) that text[start:end] spans, at most UNLESS_WINDOW characters either way."""
    lo = max(0, start - UNLESS_WINDOW)
    ends = [m.end() for m in _SENTENCE_END.finditer(text, lo, start)]
    if ends:
        lo = ends[-1]
    hi = min(len(text), end + UNLESS_WINDOW)
    ahead = _SENTENCE_END.search(text, end, hi)
    return lo, ahead.end() if ahead else hi


def rule_findings(
    rules: dict[str, list[Rule]], variants: Sequence[Variant], intent: Sequence[Matcher], rail: str
) -> list[Finding]:
    """One finding per (category, rule) that fires on any reading; decoded readings are named in the rule."""
    found: dict[tuple[str, str], Finding] = {}
    for variant in variants:
        folded = prefilter_text(variant.text)
        has_intent = any(p.search(variant.text, folded) for p in intent)
        for category, category_rules in rules.items():
            for rule in category_rules:
                key = (category, rule.name)
                if key not in found and rule_fires(rule, variant.text, has_intent, folded):
                    name = rule.name if variant.how == "plain" else f"{rule.name}@{variant.how}"
                    found[key] = Finding(rail=rail, rule=f"{category}.{name}", category=category, score=1.0)
    return list(found.values())


class HarmfulDetector:
    """Rules and the exemplar classifier; exemplar vectors are computed once, here."""

    def __init__(
        self,
        config: HarmfulConfig,
        exemplars: dict[str, list[str]],
        benign: list[str],
        embedder: Embedder | None,
        public_names: list[str] | None = None,
        fictional_names: list[str] | None = None,
    ) -> None:
        self.config = config
        self.names = PublicNames(
            public_names or [],
            config.name_placeholder,
            fictional_names or [],
            config.public_placeholder,
            config.fiction_placeholder,
        )
        # In the names reading, this marks a listed character (whose data is nobody's).
        self._fiction_mark = fold(config.fiction_placeholder) if config.fiction_placeholder else None
        self.name_rules = {
            name: config.categories[name].rules for name in config.name_categories if name in config.categories
        }
        self.intent = [compile_pattern(p) for p in config.intent]
        self.settings = [compile_pattern(p) for p in config.game_or_fiction]
        self.rules = {name: category.rules for name, category in config.categories.items()}
        self._other_rules = {name: rules for name, rules in self.rules.items() if name not in self.name_rules}
        self.embedder = embedder
        self.categories = [name for name in config.categories if exemplars.get(name)]
        self._labels = np.array([i for i, name in enumerate(self.categories) for _ in exemplars[name]])
        self._harmful: np.ndarray | None = None
        self._benign: np.ndarray | None = None
        if embedder is not None and self.categories:
            self._harmful = embedder.embed([t for name in self.categories for t in exemplars[name]])  # (H, D)
            self._benign = embedder.embed(benign) if benign else None  # (B, D)

    def has_intent(self, text: str) -> bool:
        folded = prefilter_text(text)
        return any(p.search(text, folded) for p in self.intent)

    def name_readings(self, raw: str) -> list[Variant]:
        """The text with every full name as the placeholder of its kind (private, public, fictional; none when
        it names nobody): read by the `name_categories` rules only."""
        reading = self.names.reading(raw) if self.name_rules else None
        return [Variant(NAMED, reading)] if reading else []

    def check_rules(self, variants: Sequence[Variant]) -> list[Finding]:
        plain = [v for v in variants if v.how != NAMED]
        named = [v for v in variants if v.how == NAMED]
        # A listed character's identifiers are nobody's personal data: when the text names one, the name
        # categories judge the names reading (where the character is marked as fictional) instead of the
        # text as written; decoded readings still count.
        fiction = self._fiction_mark is not None and any(self._fiction_mark in v.text for v in named)
        if fiction:
            found = rule_findings(self._other_rules, plain, self.intent, rail="harmful")
            found += rule_findings(self.name_rules, [v for v in plain if v.how != "plain"], self.intent, "harmful")
        else:
            found = rule_findings(self.rules, plain, self.intent, rail="harmful")
        if named:
            seen = {f.rule for f in found}
            more = rule_findings(self.name_rules, named, self.intent, rail="harmful")
            found += [f for f in more if f.rule.replace("@" + NAMED, "") not in seen]
        return found

    def in_game_or_fiction(self, text: str) -> bool:
        folded = prefilter_text(text)
        return any(p.search(text, folded) for p in self.settings)

    def classify(self, vector: np.ndarray, extra: float = 0.0) -> Finding | None:
        """The exemplar classifier for one (D,) unit vector; None when no category is close enough.
        `extra` raises every threshold (a game or fiction setting makes a look-alike more likely)."""
        if self._harmful is None:
            return None
        k = self.config.neighbours
        sims = self._harmful @ vector  # (H,)
        benign = _top_mean(self._benign @ vector, k) if self._benign is not None else -1.0
        best: Finding | None = None
        for index, name in enumerate(self.categories):
            category: Category = self.config.categories[name]
            score = _top_mean(sims[self._labels == index], k)
            close_enough = score >= category.threshold + extra and score - benign >= category.margin
            if close_enough and (best is None or score > best.score):
                best = Finding(rail="harmful", rule=f"{name}.exemplars", category=name, score=round(score, 4))
        return best

    def nearest(self, vector: np.ndarray) -> tuple[str | None, float, float]:
        """(closest category, its similarity, closest benign similarity), for explaining decisions."""
        if self._harmful is None:
            return None, 0.0, 0.0
        k = self.config.neighbours
        sims = self._harmful @ vector
        scores = [_top_mean(sims[self._labels == i], k) for i in range(len(self.categories))]
        best = int(np.argmax(scores))
        benign = _top_mean(self._benign @ vector, k) if self._benign is not None else 0.0
        return self.categories[best], scores[best], benign


def _top_mean(sims: np.ndarray, k: int) -> float:
    if sims.size == 0:
        return -1.0
    k = min(k, sims.size)
    return float(np.mean(np.partition(sims, -k)[-k:]))
