"""Building the classifier head (head.py): its training rows, the network's training, and a cross-validated
figure that says how well it separates texts it was not trained on.

Run by `domainbot guard train-head`. The rows are the policy's exemplars and the dev splits of the project's
own evaluation sets; their heldout splits, and the public sets, never train it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from guardrails.evaluation import OWN_SETS_DIR, load_own_sets
from guardrails.head import ClassifierHead, digest
from guardrails.policy import Policy
from guardrails.rails import Guardrails
from guardrails.text import decoded_payload, gist, language, variants

HIDDEN = 128
EPOCHS = 300
LEARNING_RATE = 0.01
WEIGHT_DECAY = 0.001
SEED = 0
MEMBERS = 5


@dataclass(frozen=True)
class TrainingRows:
    """Texts as the embedder reads them at run time, each labelled 1 (refuse) or 0 (let pass)."""

    texts: list[str]
    labels: list[int]

    @property
    def digest(self) -> str:
        return digest(self.texts, self.labels)


def training_rows(policy: Policy, own_dir: Path = OWN_SETS_DIR) -> TrainingRows:
    """The harmful (1) and benign (0) exemplars, then the own sets' dev items (block 1; allow and mask 0: a
    text whose personal data is masked may pass), in the languages the classifier judges. Left out, as their
    label is not in the text the head reads: conversations of several turns, whose last turn alone does not
    carry it ("now put the two parts together"), and texts with a payload the rails decode, where the head
    reads the payload instead. Each text is what the rails embed: personal data masked, cut to its gist."""
    rules_only = Guardrails(policy, embedder=None)
    limit = policy.limits.embed_chars
    languages = policy.harmful.classifier_languages
    labelled = [(text, 1) for texts in policy.exemplars.values() for text in texts]
    labelled += [(text, 0) for text in policy.benign]
    for eval_set in load_own_sets("dev", own_dir):
        for item in eval_set.items:
            if len(item.turns) == 1 and decoded_payload(variants(item.text)) is None:
                labelled.append((item.text, int(item.expect == "block")))
    seen: set[tuple[str, int]] = set()
    texts, labels = [], []
    for text, label in labelled:
        read = gist(rules_only.mask_pii(text), limit)
        if language(read) in languages and (read, label) not in seen:
            seen.add((read, label))
            texts.append(read)
            labels.append(label)
    return TrainingRows(texts, labels)


def fit(vectors: np.ndarray, labels: Sequence[int], seed: int = SEED) -> tuple[np.ndarray, ...]:
    """(hidden_weight, hidden_bias, out_weight, out_bias) of a one-hidden-layer network trained full-batch
    with Adam; refusals are weighted up to balance the classes."""
    import torch

    torch.manual_seed(seed)
    x = torch.tensor(vectors, dtype=torch.float32)
    y = torch.tensor(list(labels), dtype=torch.float32)
    positives = float(y.sum())
    if positives == 0 or positives == len(y):
        raise ValueError("the head needs texts of both labels (to refuse and to let pass)")
    hidden = torch.nn.Linear(x.shape[1], HIDDEN)
    out = torch.nn.Linear(HIDDEN, 1)
    params = [*hidden.parameters(), *out.parameters()]
    optimiser = torch.optim.Adam(params, lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    weight = torch.tensor((len(y) - positives) / positives)
    for _ in range(EPOCHS):
        optimiser.zero_grad()
        logits = out(torch.relu(hidden(x))).squeeze(1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, pos_weight=weight)
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        return (
            hidden.weight.T.numpy().copy(),
            hidden.bias.numpy().copy(),
            out.weight[0].numpy().copy(),
            out.bias.numpy().copy(),
        )


def train_head(rows: TrainingRows, vectors: np.ndarray, embedder: str, exemplars: str) -> ClassifierHead:
    """The head trained on `rows`, embedded as `vectors` by the embedder named `embedder`, stamped with the
    fingerprints of its rows and of the policy's exemplars (`exemplars`, see `exemplars_digest`)."""
    members = [fit(vectors, rows.labels, SEED + member) for member in range(MEMBERS)]
    hidden_weight, hidden_bias, out_weight, out_bias = (np.stack(arrays) for arrays in zip(*members, strict=True))
    return ClassifierHead(
        hidden_weight=hidden_weight,
        hidden_bias=hidden_bias,
        out_weight=out_weight,
        out_bias=out_bias[:, 0],
        embedder=embedder,
        digest=rows.digest,
        exemplars_digest=exemplars,
        rows=len(rows.texts),
    )


@dataclass(frozen=True)
class CrossValidation:
    """Out-of-fold figures at a probability bar: each row scored by a head trained without its fold."""

    folds: int
    bar: float
    refused: float  # share of the rows labelled 1 the head alone refuses at `bar`
    passed: float  # share of the rows labelled 0 it lets pass at `bar`


def cross_validate(rows: TrainingRows, vectors: np.ndarray, folds: int, bar: float) -> CrossValidation:
    if folds < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {folds}")
    labels = np.asarray(rows.labels)
    fold_of = np.random.default_rng(SEED).integers(0, folds, len(labels))
    scores = np.zeros(len(labels))
    for fold in range(folds):
        held = fold_of == fold
        kept = TrainingRows([t for t, h in zip(rows.texts, held, strict=True) if not h], labels[~held].tolist())
        head = train_head(kept, vectors[~held], embedder="", exemplars="")
        scores[held] = head.probability(vectors[held])
    refused = scores >= bar
    return CrossValidation(folds, bar, float(refused[labels == 1].mean()), float((~refused)[labels == 0].mean()))
