"""Building the classifier heads: their training rows, the encoder head's fine-tuning (head.py) with a
cross-validated figure that says how well it separates texts it was not trained on, and the n-gram head's
softmax (ngram_head.py).

Run by `domainbot guard train-head`. The rows are the policy's exemplars and the dev splits of the project's
own evaluation sets; their heldout splits, and the public sets, never train either head.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from guardrails.evaluation import OWN_SETS_DIR, load_own_sets
from guardrails.head import ClassifierHead, TunedEncoder, digest
from guardrails.ngram_head import ALLOW, NgramHead, ngrams, vectorise
from guardrails.policy import Policy
from guardrails.rails import Guardrails
from guardrails.text import decoded_payload, language, variants

# One setting, tried once and not tuned: three passes over the rows with rank-8 updates to every linear layer
# (its figures on the own heldout splits are in guardrails/README.md, "Measured").
RANK = 8
EPOCHS = 3
BATCH = 32
LEARNING_RATE = 1e-3
WEIGHT_DECAY = 0.01
DROPOUT = 0.1
SEED = 0
# The encoder's sentence vectors have unit length; the output reads them scaled up, so that a few degrees
# between two texts can make the difference between sure and unsure.
SCALE = 10.0
# Every linear layer of each encoder layer, as named in knowledge/bert.py.
TUNED = ("query", "key", "value", "attention_out", "intermediate", "output")

# The n-gram head (ngram_head.py): an n-gram counts when at least MIN_TEXTS training texts have it (one that a
# single text has learns that text by heart); L2 is the weight decay of its softmax, chosen by training on all
# own sets but one and scoring that one's dev split (guardrails/README.md, "The n-gram head").
MIN_TEXTS = 2
NGRAM_L2 = 1e-6
# A block item that names no category is refused as this: the general refusal.
GENERAL = "harmful"


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
    texts, labels = [], []
    seen: set[tuple[str, int]] = set()
    for read, label in labelled_rows(policy, policy.harmful.classifier_languages, own_dir):
        refuse = int(label != ALLOW)
        if (read, refuse) not in seen:
            seen.add((read, refuse))
            texts.append(read)
            labels.append(refuse)
    return TrainingRows(texts, labels)


def labelled_rows(policy: Policy, languages: Sequence[str], own_dir: Path = OWN_SETS_DIR) -> list[tuple[str, str]]:
    """(text as the rails read it, class) for the exemplars and the own sets' dev items in `languages`, as
    training_rows chooses them (a set whose file says `trains_heads: false` gives none). The class is ALLOW
    for a text that may pass, else what it is refused as: its harm category, `jailbreak`, or `harmful` for a
    block item that names no category."""
    rules_only = Guardrails(policy, embedder=None)
    labelled = [(text, name) for name, texts in policy.exemplars.items() for text in texts]
    labelled += [(text, ALLOW) for text in policy.benign]
    for eval_set in load_own_sets("dev", own_dir):
        if not eval_set.trains_heads:
            continue
        for item in eval_set.items:
            if len(item.turns) == 1 and decoded_payload(variants(item.text)) is None:
                label = (item.category or GENERAL) if item.expect == "block" else ALLOW
                labelled.append((item.text, label))
    seen: set[tuple[str, str]] = set()
    rows = []
    for text, label in labelled:
        read = rules_only.classifier_text(rules_only.mask_pii(text))
        if language(read) in languages and (read, label) not in seen:
            seen.add((read, label))
            rows.append((read, label))
    return rows


def train_head(rows: TrainingRows, folder: Path, embedder: str, exemplars: str, seed: int = SEED) -> ClassifierHead:
    """The head for the embedder model in `folder` (named `embedder`), trained on `rows` and stamped with the
    fingerprints of its rows and of the policy's exemplars (`exemplars`, see `exemplars_digest`).

    LoRA (peft) adds trainable low-rank updates to the encoder's linear layers, whose own weights stay frozen;
    they and a logistic output are trained together with AdamW on one-cycle learning rates, refusals weighted
    up to balance the classes. About a minute per thousand rows on two cores."""
    import torch
    from peft import LoraConfig, inject_adapter_in_model

    from knowledge.bert import NativeBert, unsupported_reason

    labels = torch.tensor(rows.labels, dtype=torch.float32)
    positives = float(labels.sum())
    if positives == 0 or positives == len(labels):
        raise ValueError("the head needs texts of both labels (to refuse and to let pass)")
    reason = unsupported_reason(folder)
    if reason is not None:
        raise ValueError(f"the classifier head tunes a plain BERT encoder, and {folder.name} is not one: {reason}")
    torch.manual_seed(seed)
    encoder = NativeBert(folder)
    encoder.requires_grad_(False)
    config = LoraConfig(r=RANK, lora_alpha=2 * RANK, lora_dropout=DROPOUT, target_modules=list(TUNED))
    inject_adapter_in_model(config, encoder)  # in place: the encoder's linear layers gain LoRA factors
    output = torch.nn.Linear(encoder.dimension, 1)
    trained = [p for p in encoder.parameters() if p.requires_grad] + list(output.parameters())
    optimiser = torch.optim.AdamW(trained, lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    # Batches of similar lengths pad little; their order is shuffled every pass.
    by_length = np.argsort([len(text) for text in rows.texts], kind="stable")
    batches = [by_length[i : i + BATCH] for i in range(0, len(by_length), BATCH)]
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=LEARNING_RATE, total_steps=EPOCHS * len(batches), pct_start=0.1
    )
    weight = torch.tensor((len(labels) - positives) / positives)
    order = np.random.default_rng(seed)
    encoder.train()
    for _ in range(EPOCHS):
        for index in order.permutation(len(batches)):
            chosen = batches[index]
            vectors = encoder(*encoder.tokenize([rows.texts[i] for i in chosen]))
            logits = output(vectors * SCALE).squeeze(1)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels[chosen], pos_weight=weight)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
    head = ClassifierHead(
        updates=_updates(encoder),
        out_weight=(output.weight[0].detach() * SCALE).numpy().copy(),
        out_bias=float(output.bias.detach()[0]),
        embedder=embedder,
        digest=rows.digest,
        exemplars_digest=exemplars,
        rows=len(rows.texts),
    )
    # What the rails will run (the factors multiplied into a fresh copy of the encoder) must give what was
    # trained: a peft that named or scaled its layers otherwise would fail here, not in front of users.
    encoder.eval()
    sample = rows.texts[:BATCH]
    with torch.no_grad():
        expected = torch.sigmoid(output(encoder(*encoder.tokenize(sample)) * SCALE).squeeze(1)).numpy()
    gap = float(np.abs(TunedEncoder(head, folder).probability(sample) - expected).max())
    if gap > 0.02:
        raise RuntimeError(f"the head as saved differs from the trained model by {gap:.3f} in probability")
    return head


def _updates(encoder: object) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each tuned layer's low-rank factors, named as the plain encoder names the layer, scaling folded in."""
    import torch

    assert isinstance(encoder, torch.nn.Module)
    updates = {}
    for name, module in encoder.named_modules():
        down, up, scaling = (getattr(module, key, None) for key in ("lora_A", "lora_B", "scaling"))
        if down is None or up is None or scaling is None:
            continue
        # Rounded as the file stores them (half precision), so the head in memory is the head on disk.
        updates[name] = (
            down["default"].weight.detach().numpy().astype(np.float16).astype(np.float32),
            (up["default"].weight.detach() * scaling["default"]).numpy().astype(np.float16).astype(np.float32),
        )
    return updates


@dataclass(frozen=True)
class CrossValidation:
    """Out-of-fold figures at a probability bar: each row scored by a head trained without its fold."""

    folds: int
    bar: float
    refused: float  # share of the rows labelled 1 the head alone refuses at `bar`
    passed: float  # share of the rows labelled 0 it lets pass at `bar`


def cross_validate(rows: TrainingRows, folder: Path, folds: int, bar: float) -> CrossValidation:
    """Each row scored by a head trained without its fold (so `folds` trainings, each on the rest)."""
    if folds < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {folds}")
    labels = np.asarray(rows.labels)
    fold_of = np.random.default_rng(SEED).integers(0, folds, len(labels))
    scores = np.zeros(len(labels))
    for fold in range(folds):
        held = fold_of == fold
        kept = TrainingRows([t for t, h in zip(rows.texts, held, strict=True) if not h], labels[~held].tolist())
        head = train_head(kept, folder, embedder="", exemplars="")
        scores[held] = TunedEncoder(head, folder).probability([t for t, h in zip(rows.texts, held, strict=True) if h])
    refused = scores >= bar
    return CrossValidation(folds, bar, float(refused[labels == 1].mean()), float((~refused)[labels == 0].mean()))


def train_ngram_head(
    rows: Sequence[tuple[str, str]], languages: Sequence[str], l2: float = NGRAM_L2
) -> NgramHead:
    """The n-gram head for `languages`, trained on (text, class) rows (labelled_rows): a softmax over the
    classes, its weights decayed by `l2`, the texts to refuse weighted up so that they count as much in all as
    the texts to pass. A few seconds on two cores; deterministic."""
    import torch

    texts = [text for text, _ in rows]
    labels = [label for _, label in rows]
    refused = sorted(set(labels) - {ALLOW})
    if not refused or ALLOW not in labels:
        raise ValueError("the n-gram head needs texts of both kinds (to refuse and to let pass)")
    classes = (ALLOW, *refused)
    counted = [ngrams(text) for text in texts]
    often: Counter[str] = Counter(gram for counts in counted for gram in counts)
    grams = tuple(sorted(gram for gram, texts_with in often.items() if texts_with >= MIN_TEXTS))
    index = {gram: row for row, gram in enumerate(grams)}
    line, column, value = [], [], []
    for row, counts in enumerate(counted):
        columns, values = vectorise(counts, index)
        line += [row] * len(columns)
        column += columns.tolist()
        value += values.tolist()
    shape = (len(texts), len(grams))
    features = torch.sparse_coo_tensor(
        torch.tensor([line, column]), torch.tensor(value), shape, dtype=torch.float32, check_invariants=True
    )
    target = torch.tensor([classes.index(label) for label in labels])
    passing = sum(label == ALLOW for label in labels)
    share = torch.tensor([1.0] + [passing / (len(labels) - passing)] * len(refused))
    # Zero start, full batches, L-BFGS: the same rows give the same head, with no seed to choose.
    weights = torch.zeros(len(grams), len(classes), requires_grad=True)
    bias = torch.zeros(len(classes), requires_grad=True)
    optimiser = torch.optim.LBFGS([weights, bias], max_iter=300, line_search_fn="strong_wolfe")

    def loss() -> torch.Tensor:
        optimiser.zero_grad()
        logits = torch.sparse.mm(features, weights) + bias
        value = torch.nn.functional.cross_entropy(logits, target, weight=share) + l2 * (weights**2).sum()
        value.backward()
        return value

    optimiser.step(loss)
    return NgramHead(
        grams=grams,
        weights=weights.detach().numpy().astype(np.float16).astype(np.float32),
        bias=bias.detach().numpy().copy(),
        classes=classes,
        languages=tuple(languages),
        digest=digest(texts, labels),
        rows=len(texts),
    )
