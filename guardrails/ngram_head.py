"""The n-gram head: for a language the embedder cannot read (Korean, with the shipped English-only MiniLM),
a linear model over a text's character and word n-grams that says how likely the text is one to refuse, and
what it would be refused as.

The shipped embedder's vocabulary has no Korean words, and it spells a Korean word out in jamo or, for
about a third of the final consonants, gives up on the word altogether: neither the exemplar classifier nor
the tuned encoder (head.py) can separate Korean texts, so the rules alone judged them. Character n-grams
need no vocabulary: the stem of 죽이다 is the same three syllables in 죽이는, 죽이려면 and 죽여 버릴까, and
a pair of words ("독극물 구하는") carries what neither word does alone.

The model is a softmax over the classes `allow`, each harm category and `jailbreak`, trained by
head_training.py on the policy's exemplars and the own sets' dev splits in its languages. The probability of
refusal is one minus that of `allow`; the refusal is named by the likeliest other class.

The file is a NumPy archive: a JSON header (format, classes, languages, the n-grams in the order of the
weights' rows, and the fingerprint of the training texts), the weights (n-grams x classes, half precision) and
the biases. An n-gram the training texts did not have more than once is not in it and counts for nothing.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any, cast

import numpy as np

from guardrails.head import read_archive

FORMAT = 1
ALLOW = "allow"
CHAR_SIZES = (1, 2, 3, 4)
_WORD, _PAIR = "w:", "p:"


class NgramHeadError(ValueError):
    """An n-gram head file that cannot be used: missing, damaged or of another format."""


def ngrams(text: str) -> Counter[str]:
    """The text's n-grams and their counts: characters one to four long (the text lowercased, its whitespace
    single spaces, a space at each end so that word starts and ends count), each word, and each pair of
    neighbouring words."""
    words = text.lower().split()
    padded = " " + " ".join(words) + " "
    found: Counter[str] = Counter()
    for size in CHAR_SIZES:
        found.update(padded[i : i + size] for i in range(len(padded) - size + 1))
    found.update(_WORD + word for word in words)
    found.update(f"{_PAIR}{a} {b}" for a, b in pairwise(words))
    return found


def vectorise(counts: Counter[str], index: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """The known n-grams' rows and their values: log(1 + count), scaled to unit length over the known ones, so
    that a long text does not outweigh a short one."""
    known = [(index[gram], math.log1p(count)) for gram, count in counts.items() if gram in index]
    if not known:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    rows = np.fromiter((row for row, _ in known), dtype=np.int64, count=len(known))
    values = np.fromiter((value for _, value in known), dtype=np.float32, count=len(known))
    return rows, values / np.float32(np.linalg.norm(values))


@dataclass(frozen=True)
class Judgement:
    """The head on one text: the probability that it is one to refuse, and its likeliest refusal class."""

    probability: float
    refused_as: str  # a harm category or "jailbreak"


@dataclass(frozen=True, eq=False)
class NgramHead:
    grams: tuple[str, ...]
    weights: np.ndarray  # (V, K): a row per n-gram, a column per class
    bias: np.ndarray  # (K,)
    classes: tuple[str, ...]  # classes[0] is ALLOW
    languages: tuple[str, ...]
    digest: str  # of every training text and label (head.digest)
    rows: int  # training rows, for the record
    _index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.classes or self.classes[0] != ALLOW or len(self.classes) < 2:
            raise NgramHeadError(f"an n-gram head's classes start with {ALLOW!r} and name at least one refusal")
        if self.weights.shape != (len(self.grams), len(self.classes)) or self.bias.shape != (len(self.classes),):
            raise NgramHeadError("an n-gram head's weights do not fit its n-grams and classes")
        object.__setattr__(self, "_index", {gram: row for row, gram in enumerate(self.grams)})

    def judge(self, text: str) -> Judgement:
        rows, values = vectorise(ngrams(text), self._index)
        logits = values @ self.weights[rows] + self.bias  # (K,)
        shares = np.exp(logits - logits.max())
        shares /= shares.sum()
        likeliest = 1 + int(np.argmax(shares[1:]))
        return Judgement(probability=float(1.0 - shares[0]), refused_as=self.classes[likeliest])

    def save(self, path: Path) -> None:
        header = {
            "format": FORMAT,
            "classes": list(self.classes),
            "languages": list(self.languages),
            "grams": list(self.grams),
            "digest": self.digest,
            "rows": self.rows,
        }
        arrays = {"weights": self.weights.astype(np.float16), "bias": self.bias.astype(np.float32)}
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            np.savez_compressed(
                f, header=np.array(json.dumps(header, ensure_ascii=False)), **cast(dict[str, Any], arrays)
            )

    @classmethod
    def load(cls, path: Path) -> NgramHead:
        header, arrays = read_archive(path, "an n-gram head", FORMAT, NgramHeadError)
        try:
            return cls(
                grams=tuple(str(gram) for gram in header["grams"]),
                weights=arrays["weights"],
                bias=arrays["bias"],
                classes=tuple(str(name) for name in header["classes"]),
                languages=tuple(str(name) for name in header["languages"]),
                digest=str(header["digest"]),
                rows=int(header["rows"]),
            )
        except (KeyError, TypeError) as exc:
            raise NgramHeadError(f"{path}: incomplete n-gram head file (no {exc}); rebuild it") from None
        except NgramHeadError as exc:
            raise NgramHeadError(f"{path}: {exc}; rebuild it") from None
