"""Deterministic synthetic English-like text for the knowledge benchmarks."""

from __future__ import annotations

import itertools
import random

SYLLABLES = ["ka", "lo", "mi", "ter", "an", "vel", "shu", "ro", "pen", "dis", "ca", "tor", "ny", "qua", "bel"]


class Lexicon:
    """Pseudo-words drawn with Zipf frequencies (the n-th commonest has weight 1/n), as in real text."""

    def __init__(self, size: int, seed: int = 0) -> None:
        rng = random.Random(seed)
        words: set[str] = set()
        while len(words) < size:
            words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))))
        self.words = sorted(words)
        rng.shuffle(self.words)
        self.cumulative = list(itertools.accumulate(1.0 / rank for rank in range(1, size + 1)))

    def sample(self, rng: random.Random, count: int) -> list[str]:
        return rng.choices(self.words, cum_weights=self.cumulative, k=count)


def paragraph(rng: random.Random, lexicon: Lexicon, sentences: int) -> str:
    return " ".join(
        " ".join(lexicon.sample(rng, rng.randint(8, 18))).capitalize() + "." for _ in range(sentences)
    )


def document(rng: random.Random, lexicon: Lexicon, sections: int, paragraphs: int) -> str:
    parts = [f"# {' '.join(lexicon.sample(rng, 3)).title()}"]
    for _ in range(sections):
        parts.append(f"## {' '.join(lexicon.sample(rng, 2)).title()}")
        parts.extend(paragraph(rng, lexicon, rng.randint(3, 6)) for _ in range(paragraphs))
    return "\n\n".join(parts) + "\n"
