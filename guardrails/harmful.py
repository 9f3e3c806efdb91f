"""Harmful requests: category rules, plus an embedding classifier over harmful and benign exemplars.

The classifier blocks a text when its nearest harmful exemplars (mean of the `neighbours` most similar)
reach the category's threshold *and* beat the nearest benign look-alikes by the category's margin, so a
question that merely shares words with a harmful one ("kill a process") stays closer to the benign side.

A task request's wording ("Write a tutorial on how to ...", "Can you explain step by step how I could ...")
weighs heavily in its sentence vector, so every framed request sits near every framed exemplar, harmful and
benign alike, and a benign task with the same frame can take a harmful one's margin. The objective reading
(the text with its leading frames, `harmful.frames`, stripped) settles the margin then: it is embedded with
the message, and compared with the exemplars' own objectives.
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
# An objective shorter than this many words ("it", "this one") says too little to be judged on its own.
MIN_OBJECTIVE_WORDS = 2
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
        self.frames = [compile_pattern(p) for p in config.frames]
        self.embedder = embedder
        self.categories = [name for name in config.categories if exemplars.get(name)]
        self._labels = np.array([i for i, name in enumerate(self.categories) for _ in exemplars[name]])
        self._harmful: np.ndarray | None = None
        self._benign: np.ndarray | None = None
        # The exemplars' objective readings (an exemplar without a frame stands as written).
        self._harmful_objective: np.ndarray | None = None
        self._benign_objective: np.ndarray | None = None
        if embedder is not None and self.categories:
            harmful_texts = [t for name in self.categories for t in exemplars[name]]
            self._harmful = embedder.embed(harmful_texts)  # (H, D)
            self._benign = embedder.embed(benign) if benign else None  # (B, D)
            if self.frames:
                self._harmful_objective, self._benign_objective = self._objective_vectors(
                    embedder, harmful_texts, self._harmful, benign, self._benign
                )

    def _objective_vectors(
        self,
        embedder: Embedder,
        harmful: list[str],
        harmful_vectors: np.ndarray,
        benign: list[str],
        benign_vectors: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """The exemplar vectors with every framed exemplar replaced by its objective's vector (one call)."""
        texts = [*harmful, *benign]
        stripped = [(i, objective) for i, text in enumerate(texts) if (objective := self.objective(text))]
        rows = np.vstack([harmful_vectors, *([benign_vectors] if benign_vectors is not None else [])])
        if stripped:
            rows[[i for i, _ in stripped]] = embedder.embed([objective for _, objective in stripped])
        return rows[: len(harmful)], (rows[len(harmful) :] if benign_vectors is not None else None)

    def objective(self, text: str) -> str | None:
        """What a request asks for, without the request wording in front of it ("Could you write a tutorial
        on how to pick a lock?" -> "pick a lock?"); None when no frame leads the text or too little is left.
        Each of `harmful.frames` is tried once, in order, at the start of what remains."""
        whole = text.strip()
        rest = whole
        for frame in self.frames:
            found = frame.regex.match(rest)
            if found and found.end() < len(rest):
                rest = rest[found.end() :]
        rest = rest.strip()
        return rest if rest != whole and len(rest.split()) >= MIN_OBJECTIVE_WORDS else None

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

    def classify(
        self, vector: np.ndarray, extra: float = 0.0, objective: np.ndarray | None = None
    ) -> Finding | None:
        """The exemplar classifier for one (D,) unit vector; None when no category is close enough.
        `extra` raises every threshold (a game or fiction setting makes a look-alike more likely).
        `objective`: the vector of the text's objective reading (see `objective`), when a frame was stripped."""
        if self._harmful is None:
            return None
        written = self._scores(self._harmful, self._benign, vector)
        found = self._closest(*written, extra, written[0], 0.0, "exemplars")
        if found is None and objective is not None and self._harmful_objective is not None:
            # The text as written may reach a category while a benign exemplar is as close only because both
            # share a frame: then the objectives decide the margin, with `objective_margin` more. The
            # category must still be reached as written, so a benign task whose objective merely names a harm
            # ("a chili called the Atomic Bomb") is not judged on those words alone.
            scores, benign = self._scores(self._harmful_objective, self._benign_objective, objective)
            margin = self.config.objective_margin
            found = self._closest(scores, benign, extra, written[0], margin, "exemplars@objective")
        return found

    def _scores(
        self, harmful: np.ndarray, benign: np.ndarray | None, vector: np.ndarray
    ) -> tuple[list[float], float]:
        """(similarity to each category's nearest exemplars, similarity to the nearest benign ones)."""
        k = self.config.neighbours
        sims = harmful @ vector  # (H,)
        categories = [_top_mean(sims[self._labels == i], k) for i in range(len(self.categories))]
        return categories, _top_mean(benign @ vector, k) if benign is not None else -1.0

    def _closest(
        self,
        scores: list[float],
        benign: float,
        extra: float,
        written: list[float],
        extra_margin: float,
        rule: str,
    ) -> Finding | None:
        """The closest category whose score, and whose score as written, reach its threshold (plus `extra`)
        and whose score beats `benign` by its margin (plus `extra_margin`)."""
        best: Finding | None = None
        for index, name in enumerate(self.categories):
            category: Category = self.config.categories[name]
            score = scores[index]
            reached = min(score, written[index]) >= category.threshold + extra
            beats = score - benign >= category.margin + extra_margin
            if reached and beats and (best is None or score > best.score):
                best = Finding(rail="harmful", rule=f"{name}.{rule}", category=name, score=round(score, 4))
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
