"""The classifier head: the embedder's own encoder, fine-tuned with LoRA to say how likely a text is one the
rails must refuse.

The exemplar classifier (harmful.py) compares a text's vector with a few hundred hand-written exemplars; the
head is the same encoder with small low-rank updates to its layers (LoRA, trained by head_training.py on the
exemplars and on the dev splits of the project's own evaluation sets, a few thousand labelled texts) and a
logistic output over the sentence vector it then gives. Tuning the encoder itself, rather than training a
network over its fixed vectors, is what lets the head tell "kill a process" from "kill my neighbour" in
phrasings no exemplar has (see guardrails/README.md, "Measured").

It works with the exemplars, not instead of them: an exemplar finding stands only when the head gives it at
least `confirms`, and the head alone blocks a request at `alone`. It is trained for one embedder and reads
that embedder's weights at start; `domainbot guard train-head` rebuilds it.

The file is a NumPy archive: for each tuned linear layer of the encoder, named as in knowledge/bert.py, its
two low-rank factors (`<layer>.down`, `<layer>.up`, the scaling folded into `up`), the output's weight and
bias, and a JSON header saying which embedder it tunes and which training texts it was built from (`digest`,
`exemplars_digest`). At start the factors are multiplied out and added to a copy of the encoder's weights,
so a message costs one more encoder pass and nothing else.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np

if TYPE_CHECKING:
    from knowledge.bert import NativeBert

FORMAT = 2
_DOWN, _UP = ".down", ".up"


class HeadError(ValueError):
    """A head file that cannot be used: missing, damaged, of another format, or for another encoder."""


class Scorer(Protocol):
    """What the rails ask a head: the probability that each text is one to refuse."""

    def probability(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass(frozen=True, eq=False)
class ClassifierHead:
    """LoRA updates for the embedder's encoder and a logistic output over its (normalised) sentence vector."""

    updates: dict[str, tuple[np.ndarray, np.ndarray]]  # layer -> (down (r, in), up (out, r)), scaling folded in
    out_weight: np.ndarray  # (D,)
    out_bias: float
    embedder: str  # the name of the embedder whose encoder it tunes
    digest: str  # of every training text and label (see `digest`)
    exemplars_digest: str  # of the exemplar texts alone, checked at start
    rows: int  # training rows, for the record
    _bound: dict[Path, TunedEncoder] = field(default_factory=dict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def dimension(self) -> int:
        return int(self.out_weight.shape[0])

    def scorer(self, folder: Path) -> TunedEncoder:
        """The tuned encoder over the embedder model in `folder`, built once per folder (about 0.3 s and one
        more copy of the encoder's weights). HeadError when that model is not one the head fits."""
        with self._lock:
            if folder not in self._bound:
                self._bound[folder] = TunedEncoder(self, folder)
            return self._bound[folder]

    def save(self, path: Path) -> None:
        header = {
            "format": FORMAT,
            "embedder": self.embedder,
            "digest": self.digest,
            "exemplars_digest": self.exemplars_digest,
            "rows": self.rows,
            "out_bias": self.out_bias,
        }
        arrays = {"out_weight": self.out_weight.astype(np.float32)}
        for layer, (down, up) in self.updates.items():
            # Half precision halves the file; the products added to the weights differ by about 1e-3 of them.
            arrays[layer + _DOWN] = down.astype(np.float16)
            arrays[layer + _UP] = up.astype(np.float16)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            np.savez_compressed(f, header=np.array(json.dumps(header, sort_keys=True)), **cast(dict[str, Any], arrays))

    @classmethod
    def load(cls, path: Path) -> ClassifierHead:
        header, arrays = read_archive(path, "a classifier head", FORMAT, HeadError)
        out_weight = arrays.pop("out_weight", None)
        layers = sorted({name.rsplit(".", 1)[0] for name in arrays})
        try:
            updates = {layer: (arrays[layer + _DOWN], arrays[layer + _UP]) for layer in layers}
        except KeyError as exc:
            raise HeadError(f"{path}: a low-rank factor is missing ({exc}); rebuild it") from None
        fits = all(d.ndim == u.ndim == 2 and d.shape[0] == u.shape[1] for d, u in updates.values())
        if out_weight is None or out_weight.ndim != 1 or not updates or not fits:
            raise HeadError(f"{path}: weight shapes do not fit together; rebuild it")
        try:
            return cls(
                updates=updates,
                out_weight=out_weight,
                out_bias=float(header["out_bias"]),
                embedder=str(header["embedder"]),
                digest=str(header["digest"]),
                exemplars_digest=str(header["exemplars_digest"]),
                rows=int(header["rows"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise HeadError(f"{path}: incomplete header ({exc}); rebuild it") from None


class TunedEncoder:
    """The embedder's encoder with a head's updates added to its weights, and the head's output: a Scorer."""

    def __init__(self, head: ClassifierHead, folder: Path) -> None:
        import torch

        from knowledge.bert import NativeBert, unsupported_reason

        reason = unsupported_reason(folder)
        if reason is not None:
            raise HeadError(f"the classifier head tunes a plain BERT encoder, and {folder.name} is not one: {reason}")
        self.encoder: NativeBert = NativeBert(folder)
        layers = dict(self.encoder.named_modules())
        with torch.no_grad():
            for name, (down, up) in head.updates.items():
                linear = layers.get(name)
                weight = getattr(linear, "weight", None)
                if weight is None or tuple(weight.shape) != (up.shape[0], down.shape[1]):
                    raise HeadError(f"the classifier head does not fit the encoder in {folder.name} (layer {name})")
                weight += torch.from_numpy(up @ down)
        if self.encoder.dimension != head.dimension:
            raise HeadError(
                f"the classifier head reads {head.dimension} dimensions, {folder.name} gives {self.encoder.dimension}"
            )
        self.out_weight = head.out_weight
        self.out_bias = head.out_bias
        self.seconds = 0.0  # spent in the encoder, which latency figures count as model time

    def probability(self, texts: Sequence[str]) -> np.ndarray:
        """(N,) probabilities that each text is one to refuse."""
        started = time.perf_counter()
        try:
            logits = self.encoder.encode(texts) @ self.out_weight + self.out_bias
        finally:
            self.seconds += time.perf_counter() - started
        return np.asarray(1.0 / (1.0 + np.exp(-np.clip(logits, -60.0, 60.0))))


def read_archive(
    path: Path, what: str, version: int, error: type[ValueError]
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """A head file's JSON header and its arrays (float32, by name); `error` saying what is wrong with a file
    that is missing, damaged, or of another format than `version`."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            header = json.loads(str(archive["header"]))
            names = [name for name in archive.files if name != "header"]
            arrays = {name: np.asarray(archive[name], dtype=np.float32) for name in names}
    except FileNotFoundError:
        raise error(f"{path}: file not found; build it with `domainbot guard train-head`") from None
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise error(f"{path}: not {what} file ({exc})") from None
    if not isinstance(header, dict) or header.get("format") != version:
        found = header.get("format") if isinstance(header, dict) else None
        raise error(f"{path}: {what} file of format {found!r}, not {version}; rebuild it (domainbot guard train-head)")
    return header, arrays


def digest(texts: Sequence[str], labels: Sequence[int | str]) -> str:
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
