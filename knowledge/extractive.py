"""Grounding without the model: which passage sentences answer a question, and an answer made of them.

A small model writes fluent text that the passages often do not support. This stage ranks the sentences of
the retrieved passages by how well they answer the question, so the pipeline can tell a question the
knowledge base covers from one it does not before it spends time on generation, and can answer in the
passages' own words, cited, when the model's answer does not hold up.

A sentence's score mixes its embedding similarity to the question, the share of the question's content words
it or its section heading contains (suffixes stripped, so "rate" meets "rating"), and its passage's similarity
to the question: a list item or a short sentence rarely repeats the subject its section is about.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from knowledge.inform import content_words, split_claims, stem

SENTENCE_WEIGHT = 0.45
COVERAGE_WEIGHT = 0.35
PASSAGE_WEIGHT = 0.20
# A sentence this short is a heading or a fragment, not an answer.
MIN_SENTENCE_WORDS = 4
# A sentence of an answer that adds fewer new words than this to the question's only restates it.
MIN_NEW_TERMS = 3
# A second sentence joins the best one only when it answers nearly as well.
SECOND_SENTENCE_RATIO = 0.9
_QUESTION_WORDS = frozenset(
    {"how", "what", "which", "who", "whom", "whose", "where", "when", "why", "much", "many"}
    | {"does", "did", "do", "can", "could", "should", "would", "my", "me"}
)
_LIST_MARK = re.compile(r"^(?:[-*•]|\d+[.)])\s+")
_END = re.compile(r"[.!?。:;]+$")
_CITATION = re.compile(r"\[\d{1,2}\]")


@dataclass(frozen=True)
class SentenceMatch:
    """One sentence of a retrieved passage and how well it answers the question."""

    passage: int  # 1-based, as the prompt numbers passages
    text: str
    score: float
    order: int  # position in its passage, to keep two sentences of one passage in reading order


def _terms(text: str) -> set[str]:
    return {stem(w) for w in content_words(text) if w not in _QUESTION_WORDS}


def coverage(question: str, sentence: str) -> float:
    """Share of the question's content words (stemmed) that the sentence contains."""
    wanted = _terms(question)
    return len(wanted & _terms(sentence)) / len(wanted) if wanted else 0.0


def _unwrap(passage: str) -> list[str]:
    """The passage's paragraphs and list items, each on one line: documents wrap lines at any word."""
    blocks = []
    for paragraph in re.split(r"\n\s*\n", passage):
        lines: list[str] = []
        for line in paragraph.splitlines():
            line = line.strip()
            if not line:
                continue
            if lines and not _LIST_MARK.match(line):
                lines[-1] += " " + line
            else:
                lines.append(line)
        blocks.extend(lines)
    return blocks


def adds_to(question: str, claim: str) -> bool:
    """Whether a claim says something beyond the question: "No Telegram token is set." does not answer
    "What happens when no Telegram token is set?", however well the passages support it."""
    return len(_terms(_CITATION.sub("", claim)) - _terms(question)) >= MIN_NEW_TERMS


def drop_headings(answer: str, passages: Sequence[str]) -> str:
    """The answer without sentences that only copy a passage's heading ("Ratings and training rounds [1].")."""

    def key(text: str) -> str:
        return " ".join(_END.sub("", _CITATION.sub("", text)).casefold().split())

    headings = {key(block) for passage in passages for block in _unwrap(passage) if not _END.search(block)}
    sentences = [text for text, _, _ in split_claims(answer)]
    kept = [text for text in sentences if key(text) not in headings]
    return " ".join(kept) if len(kept) < len(sentences) else answer


def passage_headings(passage: str) -> str:
    """The headings a passage carries (its section's title, "Adding documents"), joined by spaces."""
    return " ".join(block for block in _unwrap(passage) if not _END.search(block))


def passage_sentences(passage: str) -> list[str]:
    """The sentences of a passage that could answer something: list marks removed, headings left out."""
    sentences = []
    for block in _unwrap(passage):
        block = _LIST_MARK.sub("", block)
        if not _END.search(block):
            continue  # a heading: documents end their sentences, and their items, with punctuation
        for text, _, _ in split_claims(block):
            if len(text.split()) >= MIN_SENTENCE_WORDS:
                sentences.append(text)
    return sentences


def rank_sentences(
    question: str,
    passages: Sequence[str],
    embed: Callable[[Sequence[str]], np.ndarray],
    retrieval_scores: Sequence[float] | None = None,
) -> list[SentenceMatch]:
    """Every answer-like sentence of `passages`, the best answer to `question` first. `retrieval_scores` (the
    search's scores of the passages) count for half of a passage's similarity: the hybrid search, with its
    lexical side, often knows better than the embedder which passage is about the question."""
    found = [(p, i, s) for p, passage in enumerate(passages, start=1) for i, s in enumerate(passage_sentences(passage))]
    if not found or not question.strip():
        return []
    vectors = embed([question, *passages, *(s for _, _, s in found)])
    asked, whole, parts = vectors[0], vectors[1 : 1 + len(passages)], vectors[1 + len(passages) :]
    passage_similarity = np.clip(whole @ asked, 0.0, 1.0)  # (P,)
    if retrieval_scores is not None and len(retrieval_scores) == len(passages) and max(retrieval_scores) > 0:
        found_by_search = np.clip(np.asarray(retrieval_scores, np.float32) / max(retrieval_scores), 0.0, 1.0)
        passage_similarity = 0.5 * passage_similarity + 0.5 * found_by_search
    # A sentence under "Adding documents" answers "How do I add documents?" without repeating "documents":
    # the question's words count as covered when the sentence's section heading has them.
    headings = [passage_headings(passage) for passage in passages]
    sentence_similarity = np.clip(parts @ asked, 0.0, 1.0)  # (S,)
    matches = [
        SentenceMatch(
            passage=p,
            text=text,
            score=round(
                SENTENCE_WEIGHT * float(sentence_similarity[row])
                + COVERAGE_WEIGHT * coverage(question, f"{headings[p - 1]} {text}")
                + PASSAGE_WEIGHT * float(passage_similarity[p - 1]),
                4,
            ),
            order=order,
        )
        for row, (p, order, text) in enumerate(found)
    ]
    return sorted(matches, key=lambda m: -m.score)


def answer_relevance(question: str, answer: str, embed: Callable[[Sequence[str]], np.ndarray]) -> float:
    """How well a written answer addresses `question`, on the scale of a sentence's score: an answer can be
    supported by the passages and still be about something else."""
    sentences = [text for text, _, _ in split_claims(answer)]
    if not sentences or not question.strip():
        return 0.0
    vectors = embed([question, answer, *sentences])
    whole = float(np.clip(vectors[1] @ vectors[0], 0.0, 1.0))
    best = float(np.clip(vectors[2:] @ vectors[0], 0.0, 1.0).max())
    return SENTENCE_WEIGHT * best + COVERAGE_WEIGHT * coverage(question, answer) + PASSAGE_WEIGHT * whole


def _cited(sentence: str, number: int) -> str:
    """The sentence with its citation before the closing punctuation, which becomes a period."""
    body = _END.sub("", sentence.rstrip())
    return f"{body} [{number}]."


def extractive_answer(matches: Sequence[SentenceMatch], threshold: float, max_sentences: int = 2) -> str:
    """The best sentences (at least `threshold`), cited, as one short answer; "" when none is good enough."""
    if not matches or matches[0].score < threshold:
        return ""
    best = matches[0]
    chosen = [best]
    for match in matches[1:max_sentences + 3]:
        if len(chosen) == max_sentences:
            break
        if match.score >= max(threshold, best.score * SECOND_SENTENCE_RATIO) and match.text != best.text:
            chosen.append(match)
    chosen.sort(key=lambda m: (m.passage != best.passage, m.passage, m.order))
    return " ".join(_cited(m.text, m.passage) for m in chosen)
