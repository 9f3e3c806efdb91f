"""`domainbot train sft|dpo|kto|round` and `domainbot eval model`: LoRA rounds, the feedback loop, evaluation."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, cast

import typer
from rich.console import Console

from bot.errors import DomainbotError

if TYPE_CHECKING:
    from bot.config import Settings
    from training.datasets import SFTFormat
    from training.rounds import BaseModel, RoundResult

RUNS_DIR = "runs"
EVALS_DIR = "evals"
Kind = Literal["sft", "dpo", "kto", "round"]


def _quiet_transformers() -> None:
    """Training prints its own progress; the libraries' bars and deprecation notes would bury it."""
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="peft")


def base_model(settings: Settings, model: str | None) -> BaseModel:
    """The local folder and the name of the model to adapt: --model, else the configured model."""
    from bot.model.loader import resolve_model
    from training.rounds import BaseModel

    resolved = resolve_model(settings if model is None else settings.model_copy(update={"model": model}))
    return BaseModel(resolved.folder, resolved.name)


def _argument_values(preset: Path | None, given: dict[str, Any]) -> dict[str, Any]:
    """Preset file first, then the flags given on the command line."""
    import yaml

    values: dict[str, Any] = {}
    if preset is not None:
        try:
            loaded = yaml.safe_load(preset.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise DomainbotError(f"Cannot read the preset {preset}: {exc}") from None
        if not isinstance(loaded, dict):
            raise DomainbotError(f"The preset {preset} must be a mapping of argument names to values.")
        values.update(loaded)
    lora = {**values.pop("lora", {}), **{k: given.pop(k) for k in list(given) if k.startswith("lora_")}}
    values.update({k: v for k, v in given.items() if v is not None})
    values["lora"] = {k.removeprefix("lora_"): v for k, v in lora.items() if v is not None}
    return values


def _validated(kind: Kind, values: dict[str, Any]) -> Any:
    from pydantic import ValidationError

    from training.arguments import PreferenceArguments, SFTArguments

    model = PreferenceArguments if kind in ("dpo", "kto") else SFTArguments
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors())
        raise DomainbotError(f"Invalid training arguments: {problems}.") from None


def _progress_printer(console: Console) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(
        TextColumn("[bold]training[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}  {task.fields[speed]:.0f} tok/s"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
    task = None

    def on_step(step: int, steps: int, loss: float, speed: float) -> None:
        nonlocal task
        if task is None:
            progress.start()
            task = progress.add_task("train", total=steps, loss=loss, speed=speed)
        progress.update(task, completed=step, loss=loss, speed=speed)
        if step == steps:
            progress.stop()

    return on_step


def train(
    kind: Annotated[
        Kind,
        typer.Argument(help="sft: instruction data; dpo: preference pairs; kto: rated rows; round: the feedback loop."),
    ],
    data: Annotated[
        Path | None, typer.Option("--data", help="The dataset file (round: instruction data to rehearse).")
    ] = None,
    data_format: Annotated[
        str, typer.Option("--format", help="sft and round: alpaca, koalpaca, chat or feedback.")
    ] = "chat",
    model: Annotated[str | None, typer.Option(help="A local model folder (default: the configured model).")] = None,
    name: Annotated[str | None, typer.Option(help="Name of the new adapter (default: next free '<kind>-NNN').")] = None,
    resume: Annotated[str | None, typer.Option(help="Continue the named run from its latest checkpoint.")] = None,
    preset: Annotated[Path | None, typer.Option(help="YAML file of training arguments; flags override it.")] = None,
    activate: Annotated[
        bool | None,
        typer.Option(
            "--activate/--no-activate",
            help="Activate the new adapter (default: no; for round: yes, when it beats the serving one).",
        ),
    ] = None,
    prompt_format: Annotated[str | None, typer.Option(help="chat (the model's template), alpaca or koalpaca.")] = None,
    rank: Annotated[int | None, typer.Option(help="LoRA rank.")] = None,
    alpha: Annotated[int | None, typer.Option(help="LoRA alpha.")] = None,
    dropout: Annotated[float | None, typer.Option(help="LoRA dropout.")] = None,
    target_modules: Annotated[
        str | None, typer.Option(help="Comma-separated linear layers to adapt, or all-linear.")
    ] = None,
    max_seq_len: Annotated[int | None, typer.Option(help="Tokens per training row.")] = None,
    micro_batch_size: Annotated[int | None, typer.Option(help="Rows per forward pass per process.")] = None,
    grad_accum: Annotated[int | None, typer.Option(help="Micro-batches per optimiser step per process.")] = None,
    packing: Annotated[bool | None, typer.Option("--packing/--no-packing", help="Pack short examples.")] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="Peak learning rate.")] = None,
    warmup_steps: Annotated[int | None, typer.Option(help="Linear warm-up steps.")] = None,
    epochs: Annotated[float | None, typer.Option(help="Passes over the data.")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many optimiser steps.")] = None,
    min_steps: Annotated[int | None, typer.Option(help="At least this many steps (round: 20).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for data order, initialisation and dropout.")] = None,
    precision: Annotated[str | None, typer.Option(help="auto, fp32, bf16 or fp16.")] = None,
    gradient_checkpointing: Annotated[
        bool | None, typer.Option("--gradient-checkpointing", help="Trade compute for memory.")
    ] = None,
    save_every: Annotated[int | None, typer.Option(help="Checkpoint every N steps (0: at the end only).")] = None,
    beta: Annotated[float | None, typer.Option(help="dpo/kto: strength of the pull to the base model.")] = None,
) -> None:
    """Train a LoRA round and register its adapter (under torchrun for several processes). `round` runs the
    feedback loop: export the corrections, train, evaluate against the serving adapter, activate if better."""
    from bot.cli import settings
    from training.registry import AdapterRegistry

    config = settings()
    if kind in ("dpo", "kto") and data_format != "chat":
        raise DomainbotError("--format is for sft and round; dpo and kto read the feedback exports (or TRL's).")
    given: dict[str, Any] = {
        "model": model,
        "prompt_format": prompt_format or config.prompt_format,
        "lora_rank": rank,
        "lora_alpha": alpha,
        "lora_dropout": dropout,
        "lora_target_modules": target_modules.split(",") if target_modules else None,
        "max_seq_len": max_seq_len,
        "micro_batch_size": micro_batch_size,
        "grad_accum": grad_accum,
        "packing": packing,
        "learning_rate": lr,
        "warmup_steps": warmup_steps,
        "epochs": epochs,
        "max_steps": max_steps,
        "min_steps": min_steps,
        "seed": seed,
        "precision": precision,
        "gradient_checkpointing": gradient_checkpointing,
        "save_every": save_every,
        "beta": beta if kind in ("dpo", "kto") else None,
    }
    values = _argument_values(preset, given)
    if data is not None and not data.is_file():
        raise DomainbotError(f"The dataset file {data} does not exist.")
    _quiet_transformers()
    main_process = int(os.environ.get("RANK", "0")) == 0  # under torchrun, only rank 0 prints
    on_step = _progress_printer(Console(stderr=True)) if main_process else None
    if kind == "round":
        if resume is not None or name is not None:
            raise DomainbotError("A feedback round names itself (round-NNN) and starts fresh: drop --resume/--name.")
        _feedback_round(config, values, data, data_format, activate is not False, on_step)
        return
    if data is None:
        raise DomainbotError(f"train {kind} needs --data FILE.")
    args = _validated(kind, {**values, "data": data, **({"format": data_format} if kind == "sft" else {})})
    registry = AdapterRegistry.in_data_dir(config.data_dir)
    runs = config.data_dir / RUNS_DIR
    if resume is not None:
        run_name = resume
        if not (runs / run_name).is_dir():
            raise DomainbotError(f"There is no run named {resume!r} in {runs} to resume.")
    else:
        run_name = name or registry.next_name(kind)
        if name is not None and name in {card.name for card in registry.list()}:
            raise DomainbotError(f"An adapter named {name!r} exists already; choose another --name.")
    base = base_model(config, args.model)
    result = _run(kind, args, base, runs / run_name, config.device, resume is not None, on_step)
    if not result.main_process:
        return
    from training.rounds import register

    register(registry, result, run_name, parent=None)
    if activate:
        registry.activate(run_name, base.name)
    metrics = result.metrics
    typer.echo(
        f"Adapter {run_name}: {metrics['steps']} steps, loss {metrics['first_loss']} -> {metrics['final_loss']}, "
        f"{metrics['tokens_per_second']} tokens/s ({metrics['precision']}, {metrics['processes']} process(es))."
    )
    typer.echo(f"Loss plot: {result.run_dir / 'loss.png'}")
    typer.echo(
        f"Active adapter: {run_name}" if activate else f"Activate it with: domainbot adapters activate {run_name}"
    )


def _feedback_round(
    config: Settings, values: dict[str, Any], data: Path | None, data_format: str, activate: bool, on_step: Any
) -> None:
    from training.cycle import run_cycle

    rehearse = (data, cast("SFTFormat", data_format)) if data is not None else None
    base = base_model(config, values.get("model"))
    _validated("round", {**values, "data": Path("feedback.jsonl"), "format": "feedback"})  # fail before exporting
    outcome = run_cycle(config, base, values, rehearse, activate=activate, on_step=on_step)
    typer.echo(f"Exported {outcome.export.rows} rows to {outcome.export.path}.")
    typer.echo(f"Adapter {outcome.adapter}: {outcome.reason}.")
    if outcome.activated:
        typer.echo(f"Active adapter: {outcome.adapter} (a running bot switches to it without a restart).")
    elif activate:
        typer.echo(f"Not activated: it does not beat {outcome.baseline}; the serving adapter is unchanged.")
    else:
        typer.echo(f"Activate it with: domainbot adapters activate {outcome.adapter}")


def _run(kind: Kind, args: Any, base: BaseModel, run_dir: Path, device: str, resume: bool, on_step: Any) -> RoundResult:
    if kind == "sft":
        from training.sft import train_sft

        return train_sft(args, base, run_dir, device, resume, on_step)
    from training.preference import train_dpo, train_kto

    trainer = train_dpo if kind == "dpo" else train_kto
    return trainer(args, base, run_dir, device, resume, on_step)


def eval_model(
    data: Annotated[Path, typer.Option("--data", help="Held-out conversations; the last answer is the reference.")],
    adapter: Annotated[str | None, typer.Option(help="Adapter name or folder (default: the active one).")] = None,
    baseline: Annotated[
        str | None, typer.Option(help="Compare with this adapter, or 'base' for the model without one.")
    ] = "base",
    data_format: Annotated[str, typer.Option("--format", help="alpaca, koalpaca, chat or feedback.")] = "chat",
    limit: Annotated[int, typer.Option(min=1, help="Evaluate the first N examples.")] = 200,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Longest greedy answer.")] = 64,
    plot: Annotated[Path | None, typer.Option(help="Where to write the PNG (default: <data_dir>/evals/).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Loss, perplexity and answer match of an adapter, with wins and losses against a baseline."""
    from bot.cli import settings
    from training.datasets import load_sft
    from training.evaluate import score_adapter
    from training.registry import AdapterRegistry

    config = settings()
    _quiet_transformers()
    registry = AdapterRegistry.in_data_dir(config.data_dir)
    examples = load_sft(data, cast("SFTFormat", data_format))[:limit]  # load_sft names a wrong format
    name = adapter or registry.active()
    if name is None:
        raise DomainbotError("No adapter to evaluate: pass --adapter NAME, or activate one first.")
    candidate = score_adapter(config, name, registry.resolve(name), examples, max_new_tokens)
    against = None
    if baseline is not None and baseline != name:
        folder = None if baseline == "base" else registry.resolve(baseline)
        against = score_adapter(config, baseline, folder, examples, max_new_tokens)
    from training.evaluate import plot_report, report

    result = report(candidate, against)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    target = plot or config.data_dir / EVALS_DIR / f"{Path(name).name}-{stamp}.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    result["plot"] = str(plot_report(result, target))
    if name in {card.name for card in registry.list()}:
        summary = {k: v for k, v in result["candidate"].items() if k != "label"}
        registry.update_metrics(name, {"eval": {"data": data.name, **summary, **result.get("comparison", {})}})
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False))
        return
    for key in ("candidate", "baseline"):
        if key in result:
            row = result[key]
            typer.echo(
                f"{row['label']:>24}: loss {row['loss']}  perplexity {row['perplexity']}  exact {row['exact']}  "
                f"contains {row['contains']}  token F1 {row['token_f1']}  ({row['examples']} examples)"
            )
    if "comparison" in result:
        c = result["comparison"]
        typer.echo(f"{'against baseline':>24}: {c['wins']} wins, {c['losses']} losses, {c['ties']} ties")
    typer.echo(f"Plot: {result['plot']}")
