"""Inform, knowledge-base side: split an answer into claims and check each against the passages it stands on.

A claim's support against a passage mixes three signals: semantic similarity (embeddings), lexical overlap
(content words, and character bigrams so Korean without spaces still overlaps), and agreement of the
specifics a reader would check — numbers and capitalised names. A number in the claim that no passage states
caps the support low, however similar the wording. Citations `[n]` are then made to point at passages that
support their claim: a citation of a passage that does not exist, or does not support the claim, is replaced
by the best supporting passage or removed, and a supported claim without one is given its best passage.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Policy = Literal["annotate", "drop", "refuse"]
Verdict = Literal["supported", "unsupported", "skipped"]

SEMANTIC_WEIGHT = 0.45
LEXICAL_WEIGHT = 0.35
SPECIFICS_WEIGHT = 0.20
# A claim stating a number that none of its passage's numbers match cannot count as supported.
NUMBER_MISMATCH_CAP = 0.3
# An English claim with this many content words no passage has, and no more than this share of its words in
# the passage, says something the passage does not: its support is capped below any useful threshold.
NOVEL_WORDS = 2
NOVEL_OVERLAP = 0.6
NOVEL_WORDS_CAP = 0.4
MIN_CLAIM_WORDS = 3
UNVERIFIED_MARK = " (unverified)"

# A sentence ends at . ! ? 。 before a space or the end, or at a line break. "1.8" does not end one, nor does the
# period of a title or an initial ("Dr. Mira Okonkwo", "J. Smith").
_NOT_AN_END = "".join(f"(?<!\\b{word})" for word in ("Dr", "Mr", "Mrs", "Ms", "Prof", "St", "Jr", "Sr", "vs", "[A-Z]"))
_SENTENCE = re.compile(rf"[^\n]+?(?:{_NOT_AN_END}[.!?。]+(?=\s|$)|(?=\n)|$)")
_CITATION = re.compile(r"\s?\[(\d{1,2})\]")
_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*")
_NAME = re.compile(r"\b[A-Z][a-zA-Z]{2,}\b")
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_ABSTAIN = re.compile(
    r"could not (?:find|verify)|couldn't find|not in the knowledge base|don't know|do not know|"
    r"찾을 수 없|모르겠",
    re.IGNORECASE,
)
_STOPWORDS = frozenset(
    re.findall(
        r"\w+",
        """a an the is are was were be been being of to in on at for by with from and or but as it its this that
        these those there their they them he she his her you your i we our can could should would will may might
        do does did not no yes so if then than also about into over under more most less very just only""",
    )
)


@dataclass
class ClaimCheck:
    """One sentence of the answer and how well the passages support it."""

    text: str
    start: int
    end: int
    verdict: Verdict
    support: float = 0.0
    best_passage: int | None = None  # 1-based, as cited
    cited: list[int] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)


@dataclass
class InformReport:
    claims: list[ClaimCheck]
    # The answer after the policy, citations repaired. Empty when the policy is "refuse" and a claim is
    # unsupported, or "drop" removed every claim: the caller then says it could not verify the answer.
    answer: str
    policy: Policy
    changed: bool

    @property
    def unsupported(self) -> list[ClaimCheck]:
        return [claim for claim in self.claims if claim.verdict == "unsupported"]


def split_claims(answer: str) -> list[tuple[str, int, int]]:
    """Sentences with their character offsets in `answer`."""
    claims = []
    for match in _SENTENCE.finditer(answer):
        text = match.group(0)
        stripped = text.strip()
        if stripped:
            start = match.start() + text.index(stripped[0])
            claims.append((stripped, start, start + len(stripped)))
    return claims


def trim_repetition(answer: str) -> str:
    """The answer up to its first sentence that repeats an earlier one (citations and case aside): a small
    model that has lost the thread says the same thing over and over, and nothing after that point is new."""
    seen: set[str] = set()
    for text, start, _ in split_claims(answer):
        key = " ".join(_WORD.findall(_CITATION.sub("", text).casefold()))
        if key in seen:
            return answer[:start].rstrip()
        if key:
            seen.add(key)
    return answer


def content_words(text: str) -> set[str]:
    """The words of `text` that carry meaning: casefolded, without stopwords and one-letter words."""
    return {w for w in (m.group(0).casefold() for m in _WORD.finditer(text)) if w not in _STOPWORDS and len(w) > 1}


def is_abstention(text: str) -> bool:
    """Whether `text` says it could not find or does not know the answer."""
    return _ABSTAIN.search(text) is not None


def _bigrams(text: str) -> set[str]:
    compact = re.sub(r"\W+", "", text.casefold())
    return {compact[i : i + 2] for i in range(len(compact) - 1)}


def _numbers(text: str) -> set[str]:
    return {n.replace(",", "").rstrip(".") for n in _NUMBER.findall(text)}


def stem(word: str) -> str:
    """A crude English stem, enough to match word forms: rate, rates, rated and rating all give "rat"."""
    for suffix in ("ing", "ed", "es", "s", "e"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def _latin(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    return bool(letters) and sum(c.isascii() for c in letters) > 0.8 * len(letters)


def novel_words(claim: str, passage: str) -> list[str]:
    """The claim's content words (stemmed) that the passage does not have."""
    have = {stem(w) for w in content_words(passage)}
    return sorted({stem(w) for w in content_words(claim)} - have)


def lexical_overlap(claim: str, passage: str) -> float:
    """Share of the claim's content words (or, for scripts that glue endings to words, character bigrams)
    found in the passage. Latin text is judged by its words alone: any two English sentences share most of
    their character bigrams, so bigrams would make an invented sentence look half supported."""
    words = {stem(w) for w in content_words(claim)}
    word_score = 1.0 - len(novel_words(claim, passage)) / len(words) if words else 0.0
    if _latin(claim):
        return word_score
    grams = _bigrams(claim)
    gram_score = len(grams & _bigrams(passage)) / len(grams) if grams else 0.0
    return max(word_score, gram_score * 0.9)


def _names(text: str) -> set[str]:
    """Capitalised words that are names: not the first word of the sentence, not a capitalised stopword."""
    first = _WORD.search(text)
    return {
        m.group(0)
        for m in _NAME.finditer(text)
        if (first is None or m.start() != first.start()) and m.group(0).casefold() not in _STOPWORDS
    }


def specifics_agreement(claim: str, passage: str) -> tuple[float, list[str]]:
    """How many of the claim's numbers and names the passage states; reasons name what it does not."""
    numbers, names = _numbers(claim), _names(claim)
    if not numbers and not names:
        return 1.0, []
    passage_numbers, passage_text = _numbers(passage), passage.casefold()
    missing_numbers = sorted(numbers - passage_numbers)
    missing_names = sorted(n for n in names if n.casefold() not in passage_text)
    found = len(numbers) - len(missing_numbers) + len(names) - len(missing_names)
    reasons = [f"number {n} not in the passage" for n in missing_numbers]
    reasons += [f"name {n} not in the passage" for n in missing_names]
    return found / (len(numbers) + len(names)), reasons


def _support(claim: str, passage: str, semantic: float | None) -> tuple[float, list[str]]:
    """Support of one claim (citations removed) by one passage, with what the passage leaves out."""
    specifics, reasons = specifics_agreement(claim, passage)
    lexical = lexical_overlap(claim, passage)
    sem = lexical if semantic is None else semantic
    if _numbers(claim) or _names(claim):
        support = SEMANTIC_WEIGHT * sem + LEXICAL_WEIGHT * lexical + SPECIFICS_WEIGHT * specifics
    else:
        # Nothing specific to agree on: meaning and words decide alone, rather than a fifth of the score for free.
        support = (SEMANTIC_WEIGHT * sem + LEXICAL_WEIGHT * lexical) / (SEMANTIC_WEIGHT + LEXICAL_WEIGHT)
    if any(reason.startswith("number") for reason in reasons):
        support = min(support, NUMBER_MISMATCH_CAP)
    if _latin(claim) and lexical < NOVEL_OVERLAP:
        # Word by word only for English: Korean glues particles to its words, so whole words rarely match.
        novel = novel_words(claim, passage)
        if len(novel) >= NOVEL_WORDS:
            support = min(support, NOVEL_WORDS_CAP)
            reasons = [*reasons, f"words not in the passage: {', '.join(novel)}"]
    return support, reasons


def check_claims(
    answer: str,
    passages: Sequence[str],
    embed: Callable[[Sequence[str]], np.ndarray] | None = None,
    threshold: float = 0.5,
    policy: Policy = "annotate",
) -> InformReport:
    """Score every claim of `answer` against `passages` (numbered from 1 as in the prompt) and apply `policy`."""
    spans = split_claims(answer)
    plain = [_CITATION.sub("", text) for text, _, _ in spans]
    checkable = [
        i
        for i, text in enumerate(plain)
        # A question claims nothing, however many of the passage's words it repeats.
        if len(_WORD.findall(text)) >= MIN_CLAIM_WORDS and not _ABSTAIN.search(text) and not text.rstrip().endswith("?")
    ]
    semantic: np.ndarray | None = None
    if embed is not None and checkable and passages:
        vectors = embed([plain[i] for i in checkable] + list(passages))
        semantic = np.zeros((len(spans), len(passages)), dtype=np.float32)
        semantic[checkable] = np.clip(vectors[: len(checkable)] @ vectors[len(checkable) :].T, 0.0, 1.0)
    claims: list[ClaimCheck] = []
    supports: dict[tuple[int, int], float] = {}  # (claim index, passage number) -> support
    for index, (text, start, end) in enumerate(spans):
        cited = [int(n) for n in _CITATION.findall(text)]
        if index not in checkable:
            claims.append(ClaimCheck(text, start, end, "skipped", cited=cited))
            continue
        if not passages:
            claims.append(ClaimCheck(text, start, end, "unsupported", cited=cited, reasons=["no passages"]))
            continue
        scored = []
        for p, passage in enumerate(passages):
            support, reasons = _support(plain[index], passage, None if semantic is None else float(semantic[index, p]))
            supports[index, p + 1] = support
            scored.append((support, p + 1, reasons))
        support, best, reasons = max(scored, key=lambda item: item[0])
        verdict: Verdict = "supported" if support >= threshold else "unsupported"
        claims.append(ClaimCheck(text, start, end, verdict, round(support, 3), best, cited, reasons))
    new_answer = _apply(answer, claims, supports, len(passages), threshold, policy)
    return InformReport(claims, new_answer, policy, new_answer != answer)


def _repair_citations(
    claim: ClaimCheck, index: int, supports: dict[tuple[int, int], float], count: int, threshold: float
) -> str:
    def fix(match: re.Match[str]) -> str:
        cited = int(match.group(1))
        if 1 <= cited <= count and supports.get((index, cited), 0.0) >= threshold:
            return match.group(0)
        if claim.verdict == "supported" and claim.best_passage is not None:
            return f" [{claim.best_passage}]"
        return ""

    text = _CITATION.sub(fix, claim.text)
    if not claim.cited and claim.verdict == "supported" and claim.best_passage is not None:
        # A supported claim the model left uncited gets its source, before the closing punctuation.
        end = len(text.rstrip().rstrip(".!?。"))
        text = f"{text[:end]} [{claim.best_passage}]{text[end:]}"
    # Two citations repaired to the same passage collapse into one.
    return re.sub(r"(\s?\[(\d+)\])(?:\s?\[\2\])+", r"\1", text)


def _apply(
    answer: str,
    claims: list[ClaimCheck],
    supports: dict[tuple[int, int], float],
    count: int,
    threshold: float,
    policy: Policy,
) -> str:
    unsupported = [claim for claim in claims if claim.verdict == "unsupported"]
    if policy == "refuse" and unsupported:
        return ""  # the caller words the refusal with the passages it has
    pieces, cursor = [], 0
    for index, claim in enumerate(claims):
        pieces.append(answer[cursor : claim.start])
        cursor = claim.end
        if claim.verdict == "skipped":
            if policy == "drop" and not _WORD.search(_CITATION.sub("", claim.text)):
                continue  # a citation left on its own once the claims around it went
            pieces.append(claim.text)
            continue
        text = _repair_citations(claim, index, supports, count, threshold)
        if claim.verdict == "unsupported":
            if policy == "drop":
                continue
            body = text.rstrip()
            end = len(body.rstrip(".!?。"))
            text = body[:end] + UNVERIFIED_MARK + body[end:]
        pieces.append(text)
    pieces.append(answer[cursor:])
    return re.sub(r"[ \t]{2,}", " ", "".join(pieces)).strip()
