"""One training round from start to finish: load the base, fit the LoRA weights, write the adapter and its record.

`run_round` is shared by SFT and the preference rounds; each brings its objective and its batches. Files in
the run folder: `adapter/` (a peft adapter folder), `checkpoints/`, `loss.jsonl`, `loss.png` and `run.json`
(arguments, data, metrics). The adapter enters the registry only after the round has finished, so a failed or
interrupted round never touches the adapters the bot can activate.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import torch

from training.arguments import TrainArguments
from training.distributed import start, stop
from training.loop import Fingerprint, FitResult, Micro, Objective, config_sha256, fit
from training.model import load_for_training, plan_precision
from training.plot import loss_plot
from training.registry import AdapterCard, AdapterRegistry

ADAPTER_DIR = "adapter"
RoundKind = Literal["sft", "dpo", "kto"]
RUN_FILE = "run.json"


@dataclass(frozen=True)
class BaseModel:
    """The model a round adapts: its local folder and the name adapters record."""

    folder: Path
    name: str


@dataclass
class RoundResult:
    kind: RoundKind
    run_dir: Path
    adapter_dir: Path
    base: BaseModel
    data: dict[str, Any]
    arguments: dict[str, Any]
    metrics: dict[str, Any]
    main_process: bool


StepCallback = Callable[[int, int, float, float], None]


def run_round(
    kind: RoundKind,
    args: TrainArguments,
    base: BaseModel,
    data: dict[str, Any],
    objective: Objective[Micro],
    epoch_batches: Callable[[int], Sequence[Micro]],
    micro_batches_per_epoch: int,
    run_dir: Path,
    device: str = "auto",
    resume: bool = False,
    on_step: StepCallback | None = None,
    prepare: Callable[[Any, torch.device], None] | None = None,
) -> RoundResult:
    """Train one LoRA round on `base`; every process of a torchrun launch calls this with the same arguments."""
    processes = start(device)
    try:
        plan = plan_precision(args.precision, processes.device)
        model = load_for_training(
            base.folder, processes.device, plan, args.lora, args.seed, args.gradient_checkpointing
        )
        if prepare is not None:
            prepare(model, processes.device)
        fingerprint = Fingerprint(
            base_model=base.name,
            base_config_sha256=config_sha256(base.folder),
            data_sha256=str(data.get("sha256", "")),
            lora=args.lora.model_dump(),
            kind=kind,
        )
        if processes.main:
            run_dir.mkdir(parents=True, exist_ok=True)
        processes.barrier()
        started = time.perf_counter()
        fitted = fit(
            model,
            objective,
            epoch_batches,
            micro_batches_per_epoch,
            args,
            run_dir,
            processes,
            plan,
            fingerprint,
            resume=resume,
            on_step=on_step,
        )
        metrics = _metrics(fitted, plan.name, processes.world, time.perf_counter() - started)
        arguments = args.model_dump(mode="json")
        if "data" in arguments:  # the card travels with the adapter (publish): the file's name, not its path
            arguments["data"] = Path(arguments["data"]).name
        adapter_dir = run_dir / ADAPTER_DIR
        if processes.main:
            _save_adapter(model, adapter_dir, base.name)
            if fitted.losses:
                loss_plot(fitted.losses, run_dir / "loss.png", f"{kind} round on {base.name}")
            record = {
                "kind": kind,
                "base_model": base.name,
                "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "data": data,
                "arguments": arguments,
                "metrics": metrics,
            }
            (run_dir / RUN_FILE).write_text(json.dumps(record, indent=2, ensure_ascii=False), encoding="utf-8")
        processes.barrier()
        return RoundResult(kind, run_dir, adapter_dir, base, data, arguments, metrics, processes.main)
    finally:
        stop(processes)


def _metrics(fitted: FitResult, precision: str, world: int, seconds: float) -> dict[str, Any]:
    losses = fitted.losses
    return {
        "steps": fitted.steps,
        "resumed_from_step": fitted.resumed_from,
        "first_loss": round(losses[0], 6) if losses else None,
        "final_loss": round(sum(losses[-5:]) / len(losses[-5:]), 6) if losses else None,
        "real_tokens": fitted.real_tokens,
        "tokens_per_second": round(fitted.tokens_per_second, 1),
        "seconds": round(seconds, 2),
        "precision": precision,
        "processes": world,
    }


def _save_adapter(model: Any, folder: Path, base_name: str) -> None:
    """A standard peft adapter folder; it names the base by model name, never by a local path."""
    for config in model.peft_config.values():
        config.base_model_name_or_path = base_name
    model.save_pretrained(folder, safe_serialization=True)


def register(registry: AdapterRegistry, result: RoundResult, name: str, parent: str | None = None) -> None:
    """Enter a finished round's adapter in the registry with its data, arguments and metrics."""
    card = AdapterCard(
        name=name,
        kind=result.kind,
        base_model=result.base.name,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        data=result.data,
        arguments=result.arguments,
        metrics=result.metrics,
        parent=parent,
    )
    registry.add(result.adapter_dir, card)
