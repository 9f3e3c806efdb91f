"""Feedback store -> training files: SFT rows, DPO pairs or KTO rows, each written with a dataset card.

The rules (each card repeats them):

- Votes. The store keeps one rating per rater (their latest). An answer's net score is the sum of its votes:
  above 0 it is a 👍 answer, below 0 a 👎 answer; 0 is a tie and says nothing.
- Corrections. An interaction's latest correction is the right answer to its question; earlier ones are
  superseded.
- Not training data: interactions a guardrail blocked (the answer is a refusal, and a correction to a blocked
  question would teach the model to answer it), interactions with neither a rating nor a correction, ties
  without a correction, and empty questions or answers.
- SFT: (question, correction) and (question, 👍 answer).
- DPO: chosen is a correction or a 👍 answer, rejected a 👎 answer to the same or a near-identical question:
  equal once normalised (case, surrounding punctuation, spacing), or with word sets whose Jaccard similarity is
  at least `NEAR_IDENTICAL_JACCARD`. Each 👎 answer is paired with at most `MAX_CHOSEN_PER_REJECTED` chosen
  answers: its own correction first, then other corrections, then 👍 answers, the newest first.
- KTO: corrections and 👍 answers are desirable, 👎 answers undesirable. A question and answer that came out
  both ways is dropped as conflicting.
- Personal data: questions are masked when logged; answers and corrections (typed by people) pass through the
  guardrails PII masker here, and questions once more.
- Duplicates: rows equal once normalised are kept once, the oldest.

The prompt is the masked question alone: the store keeps the ids of the passages an answer used, not their text.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel

from bot import __version__
from bot.errors import DomainbotError
from bot.feedback import FeedbackStore, Interaction
from training.datasets import (
    ChatMessage,
    KTOExample,
    PreferenceExample,
    RowStyle,
    SFTExample,
    kto_row,
    preference_row,
    sft_row,
)

ExportFormat = Literal["sft", "dpo", "kto"]
EXPORT_FORMATS: tuple[str, ...] = ("sft", "dpo", "kto")
EXPORT_STYLES: tuple[str, ...] = ("trl", "llamafactory")
EXPORTS_DIR = "exports"
DATASET_INFO = "dataset_info.json"
NEAR_IDENTICAL_JACCARD = Fraction(4, 5)
MAX_CHOSEN_PER_REJECTED = 3
# LLaMA-Factory reads OpenAI-style messages as its ShareGPT format with these tags.
LLAMAFACTORY_TAGS = {
    "role_tag": "role",
    "content_tag": "content",
    "user_tag": "user",
    "assistant_tag": "assistant",
    "system_tag": "system",
}

LLAMAFACTORY_COLUMNS = {
    "sft": {"messages": "messages"},
    "dpo": {"messages": "messages", "chosen": "chosen", "rejected": "rejected"},
    "kto": {"messages": "messages", "kto_tag": "label"},
}

Mask = Callable[[str], str]

RULES = {
    "votes": "one vote per rater (their latest); net score = sum; > 0 is 👍, < 0 is 👎, 0 is a tie",
    "corrections": "the latest correction of an interaction is its right answer",
    "excluded": "blocked by a guardrail; no rating and no correction; a tie without a correction; empty text",
    "sft": "(question, correction) and (question, 👍 answer)",
    "dpo": "chosen: correction or 👍 answer; rejected: 👎 answer to the same or a near-identical question",
    "near_identical_jaccard": str(NEAR_IDENTICAL_JACCARD),
    "max_chosen_per_rejected": str(MAX_CHOSEN_PER_REJECTED),
    "kto": "corrections and 👍 answers desirable, 👎 answers undesirable; conflicting labels dropped",
    "pii": "questions, answers and corrections masked by the guardrails PII rail",
    "duplicates": "rows equal after normalising case, surrounding punctuation and spacing are kept once",
    "prompt": "the masked question alone (the store keeps passage ids, not passage text)",
}


class ExportSummary(BaseModel):
    """What one export wrote and what it left out, as the card records it."""

    format: ExportFormat
    style: RowStyle
    path: Path
    card_path: Path
    info_path: Path | None
    rows: int
    sha256: str
    interactions: int
    used: int
    skipped: dict[str, int]
    duplicates_removed: int
    details: dict[str, int]
    created_at: str
    source: str


@dataclass(frozen=True)
class _Judged:
    """One interaction's feedback boiled down: masked texts, net vote, latest correction."""

    id: str
    question: str
    answer: str
    net: int
    correction: str | None
    prompt: tuple[ChatMessage, ...] = ()  # the logged prompt, masked; empty for interactions logged without one


class _Chosen(NamedTuple):
    """An answer that can be chosen in a DPO pair: rank 0 is a correction, 1 a 👍 answer."""

    interaction: str
    rank: int
    position: int
    text: str


@dataclass(frozen=True)
class _Rows:
    rows: list[dict[str, Any]]
    keys: Sequence[tuple[str, ...]]
    details: dict[str, int]


def normalise(text: str) -> str:
    """Text compared for duplicates and same questions: NFKC, case-folded, words stripped of surrounding
    punctuation, single spaces. Punctuation inside a word stays, so "3.5" and "35" remain different."""
    words = unicodedata.normalize("NFKC", text).casefold().split()
    stripped = (_strip_punctuation(word) for word in words)
    return " ".join(word for word in stripped if word)


def _strip_punctuation(word: str) -> str:
    start, end = 0, len(word)
    while start < end and unicodedata.category(word[start]).startswith("P"):
        start += 1
    while end > start and unicodedata.category(word[end - 1]).startswith("P"):
        end -= 1
    return word[start:end]


def question_groups(questions: Iterable[str], threshold: Fraction = NEAR_IDENTICAL_JACCARD) -> dict[str, int]:
    """Group id for each normalised question; same or near-identical questions share one.

    Near-identical is word-set Jaccard >= threshold, joined transitively. Candidates come from prefix
    filtering (two sets that similar must share one of their rarest words), so it does not compare all pairs.
    """
    keys = sorted({normalise(q) for q in questions})
    words = [frozenset(key.split()) for key in keys]
    frequency = Counter(word for ws in words for word in ws)
    parent = list(range(len(keys)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    seen_by_word: dict[str, list[int]] = defaultdict(list)
    for i, ws in enumerate(words):
        rarest_first = sorted(ws, key=lambda word: (frequency[word], word))
        prefix = rarest_first[: len(ws) - math.ceil(threshold * len(ws)) + 1]
        candidates = sorted({j for word in prefix for j in seen_by_word[word]})
        for j in candidates:
            if Fraction(len(ws & words[j]), len(ws | words[j])) >= threshold:
                parent[root(i)] = root(j)
        for word in prefix:
            seen_by_word[word].append(i)
    return {key: root(i) for i, key in enumerate(keys)}


def _blocked(interaction: Interaction) -> bool:
    """A rail's verdict is logged as a summary dict with its action (older records hold the action alone)."""
    actions = (v.get("action") if isinstance(v, dict) else v for v in interaction.verdicts.values())
    return "blocked" in actions


def _judge(interactions: list[Interaction], mask: Mask) -> tuple[list[_Judged], Counter[str]]:
    judged, skipped = [], Counter[str]()
    for item in interactions:
        net = sum(rating.value for rating in item.ratings)
        latest = item.corrections[-1].text if item.corrections else None
        if _blocked(item):
            skipped["blocked by a guardrail"] += 1
        elif not item.question.strip() or not item.answer.strip():
            skipped["with an empty question or answer"] += 1
        elif not item.ratings and latest is None:
            skipped["without a rating or correction"] += 1
        elif net == 0 and latest is None:
            skipped["with tied votes and no correction"] += 1
        else:
            correction = mask(latest).strip() if latest is not None else None
            question, answer = mask(item.question).strip(), mask(item.answer).strip()
            judged.append(_Judged(item.id, question, answer, net, correction, _logged_prompt(item, mask)))
    return judged, skipped


def _logged_prompt(item: Interaction, mask: Mask) -> tuple[ChatMessage, ...]:
    """The messages the model answered, when the store has them and they end with the user's question."""
    try:
        messages = tuple(ChatMessage(role=m["role"], content=mask(m["content"])) for m in item.prompt)  # type: ignore[arg-type]
    except (KeyError, TypeError, ValueError):
        return ()
    return messages if messages and messages[-1].role == "user" else ()


def _turn(item: _Judged) -> list[ChatMessage]:
    """The prompt to learn the answer for: the one the bot built, else the question alone."""
    return list(item.prompt) if item.prompt else [ChatMessage(role="user", content=item.question)]


def _sft_rows(judged: list[_Judged], style: RowStyle) -> _Rows:
    rows, keys, details = [], [], Counter[str]()
    for item in judged:
        answers = []
        if item.correction:
            answers.append(item.correction)
            details["from_corrections"] += 1
        if item.net > 0:
            answers.append(item.answer)
            details["from_upvoted_answers"] += 1
        for answer in answers:
            example = SFTExample(messages=[*_turn(item), ChatMessage(role="assistant", content=answer)])
            rows.append(sft_row(example))
            keys.append((normalise(item.question), normalise(answer)))
    return _Rows(rows, keys, dict(details))


def _dpo_rows(judged: list[_Judged], style: RowStyle) -> _Rows:
    group = question_groups(item.question for item in judged)
    chosen_by_group: dict[int, list[_Chosen]] = defaultdict(list)
    for position, item in enumerate(judged):  # judged is oldest first
        g = group[normalise(item.question)]
        if item.correction:
            chosen_by_group[g].append(_Chosen(item.id, 0, position, item.correction))
        if item.net > 0:
            chosen_by_group[g].append(_Chosen(item.id, 1, position, item.answer))
    rows, keys, details = [], [], Counter[str]()
    for item in judged:
        if item.net >= 0:
            continue
        details["rejected_answers"] += 1
        rejected = normalise(item.answer)
        candidates = [c for c in chosen_by_group[group[normalise(item.question)]] if normalise(c.text) != rejected]
        # The rejected answer's own correction first, then other corrections, then 👍 answers; newest first.
        candidates.sort(key=lambda c: (c.interaction != item.id, c.rank, -c.position))
        if not candidates:
            details["rejected_without_chosen"] += 1
        for chosen in candidates[:MAX_CHOSEN_PER_REJECTED]:
            example = PreferenceExample(prompt=_turn(item), chosen=chosen.text, rejected=item.answer)
            rows.append(preference_row(example, style))
            keys.append((normalise(item.question), normalise(chosen.text), rejected))
    return _Rows(rows, keys, dict(details))


def _kto_rows(judged: list[_Judged], style: RowStyle) -> _Rows:
    labelled: list[tuple[_Judged, str, bool]] = []
    for item in judged:
        if item.correction:
            labelled.append((item, item.correction, True))
        if item.net != 0:
            labelled.append((item, item.answer, item.net > 0))
    labels_of: dict[tuple[str, str], set[bool]] = defaultdict(set)
    for item, answer, desirable in labelled:
        labels_of[normalise(item.question), normalise(answer)].add(desirable)
    rows, keys, details = [], [], Counter[str]()
    for item, answer, desirable in labelled:
        key = (normalise(item.question), normalise(answer))
        if len(labels_of[key]) > 1:
            details["conflicting_dropped"] += 1
            continue
        details["desirable" if desirable else "undesirable"] += 1
        rows.append(kto_row(KTOExample(prompt=_turn(item), completion=answer, desirable=desirable), style))
        keys.append((*key, str(desirable)))
    return _Rows(rows, keys, dict(details))


_BUILDERS: dict[str, Callable[[list[_Judged], RowStyle], _Rows]] = {
    "sft": _sft_rows,
    "dpo": _dpo_rows,
    "kto": _kto_rows,
}
_NEEDS = {
    "sft": "SFT needs 👍 answers or corrections",
    "dpo": "DPO needs a 👎 answer and a 👍 answer or correction to the same (or a near-identical) question",
    "kto": "KTO needs rated answers or corrections whose labels do not contradict each other",
}


def _unique(built: _Rows) -> tuple[list[dict[str, Any]], int]:
    seen: set[tuple[str, ...]] = set()
    rows = []
    for row, key in zip(built.rows, built.keys, strict=True):
        if key not in seen:
            seen.add(key)
            rows.append(row)
    return rows, len(built.rows) - len(rows)


def _nothing_to_export(
    fmt: str, store: FeedbackStore, total: int, skipped: Counter[str], judged: int
) -> DomainbotError:
    if total == 0:
        why = "it holds no interactions yet"
    elif judged == 0:
        reasons = ", ".join(f"{n} {reason}" for reason, n in skipped.most_common())
        why = f"none of its {total} interactions can be used ({reasons})"
    else:
        why = f"{judged} of its {total} interactions carry feedback, but they give no {fmt.upper()} rows"
    return DomainbotError(
        f"Nothing to export as {fmt.upper()} from the feedback store {store.path}: {why}. {_NEEDS[fmt]}; "
        "rate answers (👍/👎) or send corrections, then export again."
    )


def _dataset_info_entry(fmt: str, style: RowStyle, name: str) -> dict[str, Any] | None:
    """How LLaMA-Factory reads the file, or None where it cannot (TRL's list-valued chosen and completion)."""
    if fmt != "sft" and style != "llamafactory":
        return None
    columns = LLAMAFACTORY_COLUMNS[fmt]
    entry: dict[str, Any] = {"file_name": name, "formatting": "sharegpt", "columns": columns, "tags": LLAMAFACTORY_TAGS}
    if fmt == "dpo":
        entry["ranking"] = True
    return entry


def _read_dataset_info(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DomainbotError(
            f"{path} cannot be read ({exc}). Expected LLaMA-Factory's dataset_info.json (a JSON object); "
            "fix or move it, then export again."
        ) from None
    if not isinstance(info, dict):
        raise DomainbotError(f"{path}: expected a JSON object of datasets, got {type(info).__name__}; fix or move it.")
    return info


def _write_atomically(files: dict[Path, bytes]) -> None:
    """Each file written to a temporary name in its folder, synced, then renamed over the final name."""
    staged: list[tuple[str, Path]] = []
    try:
        for path, data in files.items():
            fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            staged.append((temporary, path))
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        for temporary, path in staged:
            os.replace(temporary, path)
    finally:
        for temporary, _ in staged:
            if os.path.exists(temporary):
                os.unlink(temporary)


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")


def _policy_mask() -> Mask:
    from guardrails import Guardrails

    return Guardrails().mask_pii


def preview_feedback(store: FeedbackStore, mask: Mask | None = None) -> dict[str, Any]:
    """What each export would hold now, without writing anything: rows per format and what was left out."""
    interactions = list(store.interactions())
    judged, skipped = _judge(interactions, mask or _policy_mask())
    rows = {fmt: len(_unique(_BUILDERS[fmt](judged, "trl"))[0]) for fmt in EXPORT_FORMATS}
    return {"interactions": len(interactions), "used": len(judged), "skipped": dict(skipped), "rows": rows}


def export_feedback(
    store: FeedbackStore,
    fmt: ExportFormat,
    out_dir: Path,
    *,
    style: RowStyle = "trl",
    mask: Mask | None = None,
    now: datetime | None = None,
) -> ExportSummary:
    """Write the store's feedback as `fmt` rows (TRL's conversational form, or LLaMA-Factory's with style=
    "llamafactory") into `out_dir`, with `<name>.card.json` beside the file and, where LLaMA-Factory can read
    it, an entry in `out_dir/dataset_info.json`. Raises DomainbotError, writing nothing, when no row results."""
    if fmt not in _BUILDERS:
        raise DomainbotError(f"Expected an export format among {', '.join(EXPORT_FORMATS)}, got {fmt!r}.")
    if style not in EXPORT_STYLES:
        raise DomainbotError(f"Expected an export style among {', '.join(EXPORT_STYLES)}, got {style!r}.")
    interactions = list(store.interactions())
    judged, skipped = _judge(interactions, mask or _policy_mask())
    built = _BUILDERS[fmt](judged, style)
    rows, duplicates = _unique(built)
    if not rows:
        raise _nothing_to_export(fmt, store, len(interactions), skipped, len(judged))

    created = (now or datetime.now(UTC)).astimezone(UTC)
    data = _jsonl(rows)
    digest = hashlib.sha256(data).hexdigest()
    suffix = "" if style == "trl" else f"-{style}"
    name = f"feedback-{fmt}{suffix}-{created:%Y%m%d-%H%M%S}-{digest[:8]}"
    path, card_path = out_dir / f"{name}.jsonl", out_dir / f"{name}.card.json"
    summary = ExportSummary(
        format=fmt,
        style=style,
        path=path,
        card_path=card_path,
        info_path=None,
        rows=len(rows),
        sha256=digest,
        interactions=len(interactions),
        used=len(judged),
        skipped=dict(skipped),
        duplicates_removed=duplicates,
        details=built.details,
        created_at=created.isoformat(timespec="seconds"),
        source=str(store.path),
    )
    files = {path: data}
    entry = _dataset_info_entry(fmt, style, path.name)
    if entry is not None:
        summary.info_path = out_dir / DATASET_INFO
        info = _read_dataset_info(summary.info_path)
        info[name] = entry
        files[summary.info_path] = (json.dumps(info, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    card = {
        "name": name,
        "file": path.name,
        **summary.model_dump(mode="json", exclude={"path", "card_path", "info_path"}),
        "llamafactory": entry,
        "domainbot_version": __version__,
        "rules": RULES,
    }
    files[card_path] = (json.dumps(card, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        _write_atomically(files)
    except OSError as exc:
        raise DomainbotError(
            f"Cannot write the export to {out_dir} ({exc.strerror or exc}). Expected a folder that can be written "
            "to; free some space or choose another with --out."
        ) from None
    return summary
