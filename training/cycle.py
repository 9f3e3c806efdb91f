"""One turn of the feedback loop: what people corrected becomes an adapter, kept only if it answers better.

1. Export the SFT rows (corrections and 👍 answers) from the feedback store.
2. Train a LoRA round on them, optionally mixed with an instruction file so general skills are rehearsed.
3. Score the new adapter and the one serving now (or the base model) on the exported rows.
4. Activate the new adapter when it wins: a lower loss on the wanted answers and no more losses than wins.
   A running bot watches the registry and switches to it without a restart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.config import Settings
from bot.errors import DomainbotError
from bot.feedback import FEEDBACK_FILE, FeedbackStore
from training.arguments import SFTArguments
from training.datasets import SFTFormat, load_sft, sft_row
from training.evaluate import compare, score_adapter
from training.export import ExportSummary, export_feedback
from training.registry import AdapterRegistry
from training.rounds import BaseModel, StepCallback, register
from training.sft import train_sft

# A round often learns from a handful of corrections: a higher rate than a large SFT run's, and enough steps
# (repeating the rows) to take them in. Flags and presets override these.
# Rows hold the prompt the bot built (system prompt, few-shot turns, passages): room for it in one row.
ROUND_DEFAULTS: dict[str, Any] = {"learning_rate": 1e-3, "epochs": 2.0, "min_steps": 20, "max_seq_len": 2048}
EXPORTS_DIR = "exports"
RUNS_DIR = "runs"


@dataclass
class CycleResult:
    export: ExportSummary
    adapter: str
    baseline: str
    scores: dict[str, dict[str, Any]] = field(default_factory=dict)
    comparison: dict[str, int] = field(default_factory=dict)
    activated: bool = False
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "export": {"path": str(self.export.path), "rows": self.export.rows, "sha256": self.export.sha256},
            "adapter": self.adapter,
            "baseline": self.baseline,
            "scores": self.scores,
            "comparison": self.comparison,
            "activated": self.activated,
            "reason": self.reason,
        }


def _training_file(export: ExportSummary, rehearse: tuple[Path, SFTFormat] | None, run_dir: Path) -> Path:
    """The export alone, or the export followed by the rehearsal examples, as one chat-format file."""
    if rehearse is None:
        return export.path
    rows = [sft_row(example) for example in load_sft(export.path, "feedback")]
    rows += [sft_row(example) for example in load_sft(*rehearse)]
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "train.jsonl"
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def run_cycle(
    settings: Settings,
    base: BaseModel,
    overrides: dict[str, Any] | None = None,
    rehearse: tuple[Path, SFTFormat] | None = None,
    activate: bool = True,
    max_new_tokens: int = 64,
    eval_limit: int = 100,
    on_step: StepCallback | None = None,
) -> CycleResult:
    data_dir = settings.data_dir
    if not (data_dir / FEEDBACK_FILE).exists():
        raise DomainbotError("There is no feedback yet: rate or correct some answers first.")
    store = FeedbackStore.in_data_dir(data_dir)
    try:
        export = export_feedback(store, "sft", data_dir / EXPORTS_DIR)
    finally:
        store.close()
    registry = AdapterRegistry.in_data_dir(data_dir)
    serving = registry.active()
    name = registry.next_name("round")
    run_dir = data_dir / RUNS_DIR / name
    train_file = _training_file(export, rehearse, run_dir)
    values = {
        **ROUND_DEFAULTS,
        "data": train_file,
        "format": "feedback" if rehearse is None else "chat",
        **(overrides or {}),
    }
    args = SFTArguments.model_validate(values)
    result = train_sft(args, base, run_dir, settings.device, on_step=on_step)
    register(registry, result, name, parent=serving)

    examples = load_sft(export.path, "feedback")[:eval_limit]
    baseline_label = serving or "base"
    candidate = score_adapter(settings, name, registry.path(name), examples, max_new_tokens)
    baseline = score_adapter(
        settings, baseline_label, registry.path(serving) if serving else None, examples, max_new_tokens
    )
    outcome = CycleResult(export, name, baseline_label)
    outcome.scores = {name: candidate.summary(), baseline_label: baseline.summary()}
    outcome.comparison = compare(candidate, baseline)
    registry.update_metrics(name, {"eval": {"data": export.path.name, **outcome.scores[name], **outcome.comparison}})

    ours, theirs = outcome.scores[name], outcome.scores[baseline_label]
    wins, losses = outcome.comparison["wins"], outcome.comparison["losses"]
    better = ours["loss"] < theirs["loss"] and wins >= losses
    outcome.reason = (
        f"loss on the wanted answers {theirs['loss']} -> {ours['loss']}, token F1 {theirs['token_f1']} -> "
        f"{ours['token_f1']}, {wins} wins / {losses} losses against {baseline_label}"
    )
    if better and activate:
        registry.activate(name, base.name)
        outcome.activated = True
    return outcome
