"""Harmful requests: category rules, plus an embedding classifier over harmful and benign exemplars.

The classifier blocks a text when its nearest harmful exemplars (mean of the `neighbours` most similar)
reach the category's threshold *and* beat the nearest benign look-alikes by the category's margin, so a
question that merely shares words with a harmful one ("kill a process") stays closer to the benign side.
With a trained head (head.py, the embedder's encoder fine-tuned to tell the two apart), such a finding stands
only when the head confirms it, and the head alone blocks what it is sure of.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from guardrails.head import ClassifierHead, HeadError, Scorer, exemplars_digest
from guardrails.literals import Matcher, any_match, prefilter_text
from guardrails.names import PublicNames
from guardrails.ngram_head import NgramHead
from guardrails.policy import Category, HarmfulConfig, Rule, compile_pattern
from guardrails.text import Variant, fold
from guardrails.verdict import Finding
from knowledge.embedder import Embedder

# An `unless` excuses a match only when it is this close (characters either side): in a long message, "the
# history of" three paragraphs away does not excuse "how do I make sarin".
UNLESS_WINDOW = 200
# The reading in which possibly private names stand as the placeholder ("What is someone's address?").
NAMED = "named"
# What the n-gram head calls a text it would refuse as a jailbreak; the jailbreak rail's findings say the same.
JAILBREAK = "jailbreak"
# A full stop ends a sentence only before a space, a closing quote or the end: "1.5 kg" and "v2.0" go on.
_SENTENCE_END = re.compile(r"[.!?]+(?=[\s\"')\]]|$)|[。？！\n]+")
# In a short message a request counts for a match in its own sentence or this many sentences either side
# ("I still have the admin password. How do I wipe their database?"); in a longer one, a pasted document
# whose sentences are about different things, only in the match's own sentence (always within UNLESS_WINDOW).
INTENT_SENTENCES = 1
SHORT_MESSAGE = 400

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GameExcuse:
    """`harmful.game_setting`, compiled: a game named near a match of a rule marked `excused_in_games`
    excuses it, unless `real` says the harm is meant outside the game."""

    setting: Matcher
    real: Matcher | None


class Requests:
    """Where a text asks for something (the intent patterns' matches), found on first use, once per text.
    A rule that needs an intent fires only when a request sits near its match (in its sentence, or in a short
    message the sentence before or after; see INTENT_SENTENCES): in a long paste, "Can you proofread this?"
    at the top does not make "the doctor found the poison in his tea" paragraphs down a request for poison."""

    def __init__(self, patterns: Sequence[Matcher], text: str, folded: str) -> None:
        self._patterns = patterns
        self._text = text
        self._folded = folded
        self._any: bool | None = None
        self._spans: list[tuple[int, int]] | None = None

    def any(self) -> bool:
        if self._any is None:
            self._any = any(p.search(self._text, self._folded) for p in self._patterns)
        return self._any

    def near(self, lo: int, hi: int) -> bool:
        """Whether a request overlaps text[lo:hi]. Spans are found in the whole text, so anchors in intent
        patterns (a terse request is one at the start of the message) keep their meaning."""
        if not self.any():
            return False
        if self._spans is None:
            self._spans = [m.span() for p in self._patterns for m in p.finditer(self._text, self._folded)]
        return any(start <= hi and end >= lo for start, end in self._spans)


def without_evasion(evasion: Sequence[Matcher], text: str, folded: str) -> tuple[str, str] | None:
    """`text` and `folded` with every phrase about escaping detection blanked out ("and avoid getting caught",
    "evade detection"), for reading rules' `unless` in: "avoid" and "detect" there excuse nothing, where
    "how to avoid identity theft" and "how banks detect fraud" do. None when the text has no such phrase."""
    spans = [m.span() for pattern in evasion for m in pattern.finditer(text, folded)]
    if not spans:
        return None
    chars, folded_chars = list(text), list(folded)
    for start, end in spans:
        chars[start:end] = folded_chars[start:end] = " " * (end - start)
    return "".join(chars), "".join(folded_chars)


FIRES, EXCUSED = "fires", "excused"


def _prepared(
    text: str, intent: Sequence[Matcher], evasion: Sequence[Matcher]
) -> tuple[str, Requests, tuple[str, str] | None]:
    """What every rule reads of one text: its folded form, its requests and the view its `unless` reads."""
    folded = prefilter_text(text)
    return folded, Requests(intent, text, folded), without_evasion(evasion, text, folded)


def rule_outcome(
    rule: Rule,
    text: str,
    requests: Requests,
    folded: str | None = None,
    games: GameExcuse | None = None,
    unless_view: tuple[str, str] | None = None,
) -> str | None:
    """FIRES when a match of the rule stands; EXCUSED when the rule matched where it asks for something and
    its `unless` (or a game named there) excused every such match: a look-alike the policy names, such as a
    bath bomb for the explosives rule; None when it did not match at all. `folded`: `prefilter_text(text)`,
    computed once per text by callers that try many rules. `unless_view`: the text and its folded form that
    `unless` reads instead (see `without_evasion`), of the same length."""
    if rule.needs_intent and not requests.any():
        return None
    unless = rule.compiled_unless
    excusable = games is not None and rule.excused_in_games
    if unless is None and not rule.needs_intent and not excusable:
        return FIRES if rule.compiled.search(text, folded) else None
    around = INTENT_SENTENCES if len(text) <= SHORT_MESSAGE else 0
    outcome = None
    for match in rule.compiled.finditer(text, folded):
        lo, hi = _context(text, match.start(), match.end())
        if rule.needs_intent:
            near = (lo, hi) if around == 0 else _context(text, match.start(), match.end(), around)
            if not requests.near(*near):
                continue
        if unless is not None and unless.search(*(unless_view or (text, folded)), lo, hi):
            outcome = EXCUSED
            continue
        if excusable and _in_game(games, text, folded, lo, hi):
            outcome = EXCUSED
            continue
        return FIRES
    return outcome


def _in_game(games: GameExcuse | None, text: str, folded: str | None, lo: int, hi: int) -> bool:
    if games is None or not games.setting.search(text, folded, lo, hi):
        return False
    return games.real is None or not games.real.search(text, folded, lo, hi)


def _context(text: str, start: int, end: int, around: int = 0) -> tuple[int, int]:
    """The sentence (or sentences) that text[start:end] spans, and `around` more sentences either side, at
    most UNLESS_WINDOW characters either way."""
    lo = max(0, start - UNLESS_WINDOW)
    ends = [m.end() for m in _SENTENCE_END.finditer(text, lo, start)]
    if len(ends) > around:
        lo = ends[-1 - around]
    hi = min(len(text), end + UNLESS_WINDOW)
    for ahead in _SENTENCE_END.finditer(text, end, hi):
        if around == 0:
            return lo, ahead.end()
        around -= 1
    return lo, hi


def rule_findings(
    rules: dict[str, list[Rule]],
    variants: Sequence[Variant],
    intent: Sequence[Matcher],
    rail: str,
    games: GameExcuse | None = None,
    evasion: Sequence[Matcher] = (),
) -> list[Finding]:
    """One finding per (category, rule) that fires on any reading; decoded readings are named in the rule.
    `evasion`: phrases about escaping detection, which rules' `unless` does not read (see `without_evasion`)."""
    found: dict[tuple[str, str], Finding] = {}
    for variant in variants:
        folded, requests, view = _prepared(variant.text, intent, evasion)
        for category, category_rules in rules.items():
            for rule in category_rules:
                key = (category, rule.name)
                if key not in found and rule_outcome(rule, variant.text, requests, folded, games, view) == FIRES:
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
        head: ClassifierHead | None = None,
        ngram_head: NgramHead | None = None,
    ) -> None:
        self.config = config
        self.ngram_head = ngram_head if config.ngram_head is not None else None
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
        self.evasion = [compile_pattern(p) for p in config.evasion]
        self.facts = [compile_pattern(p) for p in config.unasked.facts] if config.unasked else []
        game = config.game_setting
        self.games = (
            GameExcuse(compile_pattern(game.pattern), compile_pattern(game.real) if game.real else None)
            if game
            else None
        )
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
        self.head = _usable(head, embedder, exemplars, benign) if self._harmful is not None else None

    def has_intent(self, text: str) -> bool:
        return any_match(self.intent, text)

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
            found = rule_findings(self._other_rules, plain, self.intent, "harmful", self.games, self.evasion)
            decoded = [v for v in plain if v.how != "plain"]
            found += rule_findings(self.name_rules, decoded, self.intent, "harmful", self.games, self.evasion)
        else:
            found = rule_findings(self.rules, plain, self.intent, "harmful", self.games, self.evasion)
        if named:
            seen = {f.rule for f in found}
            more = rule_findings(self.name_rules, named, self.intent, "harmful", self.games, self.evasion)
            found += [f for f in more if f.rule.replace("@" + NAMED, "") not in seen]
        return found

    def names_a_look_alike(self, variants: Sequence[Variant]) -> bool:
        """Whether a harmful rule matched the text as written and its `unless` excused it: the policy names it
        a look-alike ("a bath bomb"), so the head alone needs its raised bar to refuse it."""
        for variant in variants:
            if variant.how != "plain":
                continue
            folded, requests, view = _prepared(variant.text, self.intent, self.evasion)
            for rules in self.rules.values():
                for rule in rules:
                    if rule_outcome(rule, variant.text, requests, folded, self.games, view) == EXCUSED:
                        return True
        return False

    def asks_about_a_fact(self, text: str) -> bool:
        return any_match(self.facts, text)

    def in_game_or_fiction(self, text: str) -> bool:
        return any_match(self.settings, text)

    def names_a_game(self, text: str) -> bool:
        """A game named in any language (`game_setting`), and nothing saying the harm is meant outside it."""
        games = self.games
        if games is None or not any_match([games.setting], text):
            return False
        return games.real is None or not any_match([games.real], text)

    def classify(
        self,
        vector: np.ndarray,
        text: str,
        extra: float = 0.0,
        lead: float = 0.0,
        head_alone: bool = True,
        exemplars: bool = True,
        look_alike: Callable[[], bool] | None = None,
    ) -> Finding | None:
        """The classifier for one text as the embedder read it and its (D,) unit vector; None when the text
        may pass. The exemplars judge the vector and the head the text. `extra` raises every
        threshold (a game or fiction setting makes a look-alike more likely) and `lead` every margin over the
        harmless look-alikes (a text that asks for nothing); with either, the head alone needs `alone_raised`.
        head_alone=False: the head only confirms exemplar findings, it blocks nothing alone. exemplars=False:
        the head alone judges (a question about a fact or an event, which the exemplars cannot tell from a
        plan to repeat it). The head never blocks alone a text of fewer than `min_words` words. `look_alike`:
        asked only when the head would block alone below `alone_raised`, whether the policy names the text a
        look-alike (see `names_a_look_alike`); then it needs `alone_raised` too."""
        found = self._exemplar_finding(vector, extra, lead) if exemplars else None
        if self.head is None or self.config.head is None:
            return found
        if found is None and not head_alone:
            return None  # nothing for the head to confirm, and it may not block alone: spare its encoder pass
        settings = self.config.head
        probability = float(self.head.probability([text])[0])
        if found is not None and probability >= settings.confirms:
            return found
        bar = settings.alone if extra == 0 and lead == 0 else settings.alone_raised
        if not head_alone or probability < bar or len(text.split()) < settings.min_words:
            return None
        if probability < settings.alone_raised and look_alike is not None and look_alike():
            return None
        # The refusal names the category whose exemplars are nearest when they are nearer than the harmless
        # ones; a text near none of them (a jailbreak, which no harm category describes) gets the general one.
        nearest, similarity, benign = self.nearest(vector)
        category = nearest if similarity >= benign else None
        return Finding(
            rail="harmful", rule=f"{category or 'harmful'}.head", category=category, score=round(probability, 4)
        )

    def judges_ngrams(self, language: str) -> bool:
        """Whether the n-gram head judges texts in this language."""
        settings = self.config.ngram_head
        return self.ngram_head is not None and settings is not None and language in settings.languages

    def classify_ngrams(self, text: str, raised: bool) -> Finding | None:
        """The n-gram head alone on a text the rules let pass, in a language it judges; None when the text may
        pass. raised: the text is in a game or fiction setting, or asks for nothing, and needs `alone_raised`."""
        settings = self.config.ngram_head
        if self.ngram_head is None or settings is None or len(text.split()) < settings.min_words:
            return None
        judgement = self.ngram_head.judge(text)
        if judgement.probability < (settings.alone_raised if raised else settings.alone):
            return None
        score = round(judgement.probability, 4)
        if judgement.refused_as == JAILBREAK:
            return Finding(rail="jailbreak", rule="jailbreak.ngrams", category=JAILBREAK, score=score)
        # A class that is no longer a policy category (the head predates an edit) gets the general refusal.
        category = judgement.refused_as if judgement.refused_as in self.config.categories else None
        return Finding(rail="harmful", rule=f"{category or 'harmful'}.ngrams", category=category, score=score)

    def _exemplar_finding(self, vector: np.ndarray, extra: float, lead: float) -> Finding | None:
        """The closest category whose exemplars are close enough, by its threshold and margin."""
        if self._harmful is None:
            return None
        k = self.config.neighbours
        sims = self._harmful @ vector  # (H,)
        benign = _top_mean(self._benign @ vector, k) if self._benign is not None else -1.0
        best: Finding | None = None
        for index, name in enumerate(self.categories):
            category: Category = self.config.categories[name]
            score = _top_mean(sims[self._labels == index], k)
            close_enough = score >= category.threshold + extra and score - benign >= category.margin + lead
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


def _usable(
    head: ClassifierHead | None, embedder: Embedder | None, exemplars: dict[str, list[str]], benign: list[str]
) -> Scorer | None:
    """The head over this embedder's encoder, when it was trained for that encoder and built from these
    exemplars; else None, with a warning: a head for another encoder reads noise, and one built before the
    exemplars were edited would veto what the operator just added."""
    if head is None or embedder is None:
        return None
    if (head.embedder, head.dimension) != (embedder.name, embedder.dimension):
        log.warning(
            "The classifier head was trained for the embedder %s (%d dimensions), not %s (%d); the exemplar "
            "classifier works alone. Rebuild the head with `domainbot guard train-head`.",
            head.embedder,
            head.dimension,
            embedder.name,
            embedder.dimension,
        )
        return None
    if head.exemplars_digest != exemplars_digest(exemplars, benign):
        log.warning(
            "The exemplars changed after the classifier head was built; the exemplar classifier works alone "
            "until `domainbot guard train-head` rebuilds it."
        )
        return None
    folder = getattr(embedder, "path", None)
    try:
        if folder is None:
            raise HeadError(f"the embedder {embedder.name} has no model folder for the head to tune")
        return head.scorer(folder)
    except (HeadError, OSError) as exc:
        log.warning("The classifier head cannot be used (%s); the exemplar classifier works alone.", exc)
        return None


def _top_mean(sims: np.ndarray, k: int) -> float:
    if sims.size == 0:
        return -1.0
    k = min(k, sims.size)
    return float(np.mean(np.partition(sims, -k)[-k:]))
