"""`domainbot train sft|dpo|kto` and `domainbot eval model`: LoRA rounds and their evaluation."""

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
    from training.registry import AdapterRegistry
    from training.rounds import BaseModel, RoundResult

RUNS_DIR = "runs"
EVALS_DIR = "evals"
Kind = Literal["sft", "dpo", "kto"]


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


def adapter_folder(registry: AdapterRegistry, value: str) -> Path:
    """A registry name, or a path to a peft adapter folder."""
    if value in {card.name for card in registry.list()}:
        return registry.path(value)
    folder = Path(value).expanduser()
    if (folder / "adapter_config.json").exists():
        return folder
    known = ", ".join(card.name for card in registry.list()) or "none yet"
    raise DomainbotError(f"No adapter named {value!r} (registered: {known}) and no adapter folder at {folder}.")


def _arguments(kind: Kind, preset: Path | None, given: dict[str, Any]) -> Any:
    """Preset file first, then the flags given on the command line; validated in one go."""
    import yaml
    from pydantic import ValidationError

    from training.arguments import PreferenceArguments, SFTArguments

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
    model = SFTArguments if kind == "sft" else PreferenceArguments
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


def register_round(settings: Settings, result: RoundResult, name: str, activate: bool) -> str:
    from training.registry import AdapterCard, AdapterRegistry

    registry = AdapterRegistry.in_data_dir(settings.data_dir)
    card = AdapterCard(
        name=name,
        kind=result.kind,
        base_model=result.base.name,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        data=result.data,
        arguments=result.arguments,
        metrics=result.metrics,
    )
    registry.add(result.adapter_dir, card)
    if activate:
        registry.activate(name)
    return name


def train(
    kind: Annotated[Kind, typer.Argument(help="sft: instruction/feedback data; dpo: preference pairs; kto: rows.")],
    data: Annotated[Path, typer.Option("--data", help="The dataset file.")],
    data_format: Annotated[
        str, typer.Option("--format", help="sft only: alpaca, koalpaca, chat or feedback.")
    ] = "chat",
    model: Annotated[str | None, typer.Option(help="A local model folder (default: the configured model).")] = None,
    name: Annotated[str | None, typer.Option(help="Name of the new adapter (default: next free '<kind>-NNN').")] = None,
    resume: Annotated[str | None, typer.Option(help="Continue the named run from its latest checkpoint.")] = None,
    preset: Annotated[Path | None, typer.Option(help="YAML file of training arguments; flags override it.")] = None,
    activate: Annotated[bool, typer.Option("--activate", help="Activate the adapter when the round ends.")] = False,
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
    seed: Annotated[int | None, typer.Option(help="Seed for data order, initialisation and dropout.")] = None,
    precision: Annotated[str | None, typer.Option(help="auto, fp32, bf16 or fp16.")] = None,
    gradient_checkpointing: Annotated[
        bool | None, typer.Option("--gradient-checkpointing", help="Trade compute for memory.")
    ] = None,
    save_every: Annotated[int | None, typer.Option(help="Checkpoint every N steps (0: at the end only).")] = None,
    beta: Annotated[float | None, typer.Option(help="dpo/kto: strength of the pull to the base model.")] = None,
) -> None:
    """Train a LoRA round and register its adapter (run under torchrun for several processes)."""
    from bot.cli import settings
    from training.registry import AdapterRegistry

    config = settings()
    if kind != "sft" and data_format != "chat":
        raise DomainbotError("--format is for sft; dpo and kto read the feedback exports (and TRL's layouts).")
    given: dict[str, Any] = {
        "data": data,
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
        "seed": seed,
        "precision": precision,
        "gradient_checkpointing": gradient_checkpointing,
        "save_every": save_every,
    }
    if kind == "sft":
        given["format"] = data_format
    else:
        given["beta"] = beta
    args = _arguments(kind, preset, given)
    if not args.data.is_file():
        raise DomainbotError(f"The dataset file {args.data} does not exist.")
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
    _quiet_transformers()
    base = base_model(config, args.model)
    console = Console(stderr=True)
    main_process = int(os.environ.get("RANK", "0")) == 0  # under torchrun, only rank 0 prints
    on_step = _progress_printer(console) if main_process else None
    result = _run(kind, args, base, runs / run_name, config.device, resume is not None, on_step)
    if not result.main_process:
        return
    register_round(config, result, run_name, activate)
    metrics = result.metrics
    typer.echo(
        f"Adapter {run_name}: {metrics['steps']} steps, loss {metrics['first_loss']} -> {metrics['final_loss']}, "
        f"{metrics['tokens_per_second']} tokens/s ({metrics['precision']}, {metrics['processes']} process(es))."
    )
    typer.echo(f"Loss plot: {result.run_dir / 'loss.png'}")
    typer.echo(
        f"Active adapter: {run_name}" if activate else f"Activate it with: domainbot adapters activate {run_name}"
    )


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
    from training.datasets import SFTFormat, load_sft
    from training.registry import AdapterRegistry

    config = settings()
    _quiet_transformers()
    registry = AdapterRegistry.in_data_dir(config.data_dir)
    examples = load_sft(data, cast("SFTFormat", data_format))[:limit]  # load_sft names a wrong format
    name = adapter or registry.active()
    if name is None:
        raise DomainbotError("No adapter to evaluate: pass --adapter NAME, or activate one first.")
    candidate = _score(config, name, adapter_folder(registry, name), examples, max_new_tokens)
    against = None
    if baseline is not None and baseline != name:
        folder = None if baseline == "base" else adapter_folder(registry, baseline)
        against = _score(config, baseline, folder, examples, max_new_tokens)
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


def _score(config: Settings, label: str, folder: Path | None, examples: list[Any], max_new_tokens: int) -> Any:
    from bot.model.factory import open_backend
    from training.encoding import ConversationEncoder
    from training.evaluate import Evaluated, greedy_answerer, score_model

    if not examples:
        raise DomainbotError("The evaluation data holds no examples.")
    opened = open_backend(config.model_copy(update={"adapter": folder, "backend": "transformers"}))
    backend: Any = opened.backend
    loaded = backend.loaded
    encoder = ConversationEncoder(base_model(config, None).folder, config.prompt_format)
    evaluated = Evaluated(label, loaded.model, loaded.device, greedy_answerer(backend, max_new_tokens))
    return score_model(evaluated, encoder, examples)
