"""The classifier head: a small trained network over the embedder's vectors that says how likely a text is
one the rails must refuse.

The exemplar classifier (harmful.py) compares a text with a few hundred hand-written exemplars; the head is
trained on those exemplars and on the dev splits of the project's own evaluation sets, a few thousand labelled
texts, and generalises further (see guardrails/README.md, "Measured"). It works with the exemplars, not
instead of them: an exemplar finding stands only when the head gives it at least `confirms`, and the head
alone blocks a request at `alone`. It is trained for one embedder; `domainbot guard train-head` rebuilds it.

It is an ensemble: a few networks trained alike from different random starts, whose probabilities are
averaged; one network's verdict on a borderline text depends on its start, the average much less. The file
is a NumPy archive: the members' weights and biases stacked, and a JSON header saying which embedder it
reads and which training texts it was built from (`digest`, `exemplars_digest`).
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FORMAT = 1
_ARRAYS = ("hidden_weight", "hidden_bias", "out_weight", "out_bias")


class HeadError(ValueError):
    """A head file that cannot be used: missing, damaged, or of another format."""


@dataclass(frozen=True)
class ClassifierHead:
    """M networks of one hidden ReLU layer and a sigmoid output, computed with NumPy (no torch at run time)."""

    hidden_weight: np.ndarray  # (M, D, H)
    hidden_bias: np.ndarray  # (M, H)
    out_weight: np.ndarray  # (M, H)
    out_bias: np.ndarray  # (M,)
    embedder: str  # the name of the embedder whose vectors it was trained on
    digest: str  # of every training text and label (see `digest`)
    exemplars_digest: str  # of the exemplar texts alone, checked at start
    rows: int  # training rows, for the record

    @property
    def dimension(self) -> int:
        return int(self.hidden_weight.shape[1])

    def probability(self, vectors: np.ndarray) -> np.ndarray:
        """(N,) probabilities that each (N, D) vector belongs to a text to refuse: the members' mean."""
        hidden = np.maximum(np.einsum("nd,mdh->mnh", vectors, self.hidden_weight) + self.hidden_bias[:, None], 0.0)
        logits = np.einsum("mnh,mh->mn", hidden, self.out_weight) + self.out_bias[:, None]  # (M, N)
        return (1.0 / (1.0 + np.exp(-np.clip(logits, -60.0, 60.0)))).mean(axis=0)

    def save(self, path: Path) -> None:
        header = {
            "format": FORMAT,
            "embedder": self.embedder,
            "digest": self.digest,
            "exemplars_digest": self.exemplars_digest,
            "rows": self.rows,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            np.savez_compressed(
                f,
                header=np.array(json.dumps(header, sort_keys=True)),
                hidden_weight=self.hidden_weight.astype(np.float32),
                hidden_bias=self.hidden_bias.astype(np.float32),
                out_weight=self.out_weight.astype(np.float32),
                out_bias=self.out_bias.astype(np.float32),
            )

    @classmethod
    def load(cls, path: Path) -> ClassifierHead:
        try:
            with np.load(path, allow_pickle=False) as archive:
                header = json.loads(str(archive["header"]))
                arrays = {name: np.asarray(archive[name], dtype=np.float32) for name in _ARRAYS}
        except FileNotFoundError:
            raise HeadError(f"{path}: file not found; build it with `domainbot guard train-head`") from None
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
            raise HeadError(f"{path}: not a classifier head file ({exc})") from None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise HeadError(f"{path}: head format {header.get('format')!r} is not {FORMAT}; rebuild it")
        weight, bias, out, out_bias = (arrays[name] for name in _ARRAYS)
        members, _, hidden = weight.shape if weight.ndim == 3 else (0, 0, 0)
        fits = bias.shape == out.shape == (members, hidden) and out_bias.shape == (members,)
        if not members or not fits:
            raise HeadError(f"{path}: weight shapes do not fit together; rebuild it")
        try:
            return cls(
                hidden_weight=weight,
                hidden_bias=bias,
                out_weight=out,
                out_bias=out_bias,
                embedder=str(header["embedder"]),
                digest=str(header["digest"]),
                exemplars_digest=str(header["exemplars_digest"]),
                rows=int(header["rows"]),
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise HeadError(f"{path}: incomplete header ({exc}); rebuild it") from None


def digest(texts: Sequence[str], labels: Sequence[int]) -> str:
    """A fingerprint of labelled texts: a head trained on other texts has another one."""
    sha = hashlib.sha256()
    for text, label in zip(texts, labels, strict=True):
        sha.update(f"{label}\t{text}\n".encode())
    return sha.hexdigest()


def exemplars_digest(exemplars: dict[str, list[str]], benign: Sequence[str]) -> str:
    """The fingerprint of a policy's exemplar texts, which the head checks at start: an operator who edits the
    exemplars gets the exemplar classifier alone until the head is rebuilt, not a head that vetoes them."""
    texts = [text for name in sorted(exemplars) for text in exemplars[name]] + list(benign)
    labels = [1] * (len(texts) - len(benign)) + [0] * len(benign)
    return digest(texts, labels)
