"""The training loop every round shares: micro-batches in, LoRA weights and a loss log out.

A round is an `Objective` (how a micro-batch becomes a summed loss, and how many units - tokens for SFT,
pairs or rows for preference rounds - it averages over) run by `fit`. One optimiser step takes
`world x grad_accum` micro-batches from an endless, seeded stream over the epochs; process r takes its own
`grad_accum` of them. Each loss is divided by the units of the whole step, counted over all processes, so
two processes train exactly what one process with twice the accumulation trains.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import random
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import torch
from torch import nn

from bot.errors import DomainbotError
from training.arguments import TrainArguments
from training.distributed import Processes
from training.model import PrecisionPlan, out_of_memory_hint

Micro = TypeVar("Micro")
MicroIn = TypeVar("MicroIn", contravariant=True)
CHECKPOINTS = "checkpoints"
LOSS_LOG = "loss.jsonl"
STATE_FILE = "state.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


class Objective(Protocol[MicroIn]):
    def units(self, micro: MicroIn) -> int:
        """What the loss averages over in this micro-batch (known before the forward pass)."""
        ...

    def real_tokens(self, micro: MicroIn) -> int:
        """Tokens that are not padding, for the throughput figure."""
        ...

    def shape(self, micro: MicroIn) -> tuple[int, int]:
        """(rows, tokens per row) of the padded batch, for the out-of-memory message."""
        ...

    def loss(self, peft_model: Any, micro: MicroIn, device: torch.device) -> torch.Tensor:
        """The summed loss of this micro-batch (a scalar with gradients)."""
        ...


class _Step(nn.Module, Generic[Micro]):
    """Wraps the objective as a module, so DistributedDataParallel sees every forward pass."""

    def __init__(self, peft_model: Any, objective: Objective[Micro], device: torch.device) -> None:
        super().__init__()
        self.peft_model = peft_model
        self.objective = objective
        self.device = device

    def forward(self, micro: Micro) -> torch.Tensor:
        return self.objective.loss(self.peft_model, micro, self.device)


@dataclass
class Fingerprint:
    """What a checkpoint must share with the run that resumes from it."""

    base_model: str
    base_config_sha256: str
    data_sha256: str
    lora: dict[str, Any]
    kind: str

    def mismatch(self, other: dict[str, Any]) -> str | None:
        if other.get("base_config_sha256") != self.base_config_sha256:
            return f"it was made on model {other.get('base_model')!r}, and this run trains {self.base_model!r}"
        if other.get("kind") != self.kind:
            return f"it is from a {other.get('kind')} round, and this is a {self.kind} round"
        if other.get("lora") != self.lora:
            return f"its LoRA settings {other.get('lora')} differ from this run's {self.lora}"
        if other.get("data_sha256") != self.data_sha256:
            return "it was trained on different data (the dataset file changed)"
        return None


def config_sha256(folder: Path) -> str:
    return hashlib.sha256((folder / "config.json").read_bytes()).hexdigest()


@dataclass
class FitResult:
    steps: int
    losses: list[float] = field(default_factory=list)
    real_tokens: int = 0
    seconds: float = 0.0
    resumed_from: int = 0

    @property
    def tokens_per_second(self) -> float:
        return self.real_tokens / self.seconds if self.seconds else 0.0


def micro_stream(epoch_batches: Callable[[int], Sequence[Micro]]) -> Iterator[Micro]:
    """Micro-batches epoch after epoch, each epoch in its own seeded order."""
    epoch = 0
    while True:
        batches = epoch_batches(epoch)
        if not batches:
            raise DomainbotError("There is nothing to train on: every example was empty or too long.")
        yield from batches
        epoch += 1


def total_steps(args: TrainArguments, micro_batches_per_epoch: int, world: int) -> int:
    if args.max_steps is not None:
        return args.max_steps
    return max(1, args.min_steps, math.ceil(args.epochs * micro_batches_per_epoch / (world * args.grad_accum)))


def cosine_schedule(optimizer: torch.optim.Optimizer, warmup: int, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def fit(
    peft_model: Any,
    objective: Objective[Micro],
    epoch_batches: Callable[[int], Sequence[Micro]],
    micro_batches_per_epoch: int,
    args: TrainArguments,
    run_dir: Path,
    processes: Processes,
    plan: PrecisionPlan,
    fingerprint: Fingerprint,
    resume: bool = False,
    on_step: Callable[[int, int, float, float], None] | None = None,
) -> FitResult:
    """Train the LoRA weights of `peft_model`; checkpoints and the loss log go to `run_dir`."""
    device = processes.device
    steps = total_steps(args, micro_batches_per_epoch, processes.world)
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=args.learning_rate, weight_decay=args.weight_decay)
    scheduler = cosine_schedule(optimizer, args.warmup_steps, steps)
    scaler = torch.amp.GradScaler(device.type, enabled=plan.needs_scaler)
    step_module: nn.Module = _Step(peft_model, objective, device)
    if processes.distributed:
        from torch.nn.parallel import DistributedDataParallel

        step_module = DistributedDataParallel(step_module, device_ids=[device.index] if device.type == "cuda" else None)

    result = FitResult(steps=steps)
    start_step = 0
    if resume:
        start_step = _load_checkpoint(run_dir, peft_model, optimizer, scheduler, scaler, fingerprint, device)
        result.resumed_from = start_step
        result.losses = _read_losses(run_dir / LOSS_LOG, start_step)
    elif processes.main:
        (run_dir / LOSS_LOG).unlink(missing_ok=True)

    per_step = processes.world * args.grad_accum
    stream = micro_stream(epoch_batches)
    for _ in range(start_step * per_step):  # the micro-batches the checkpoint already trained on
        next(stream)

    peft_model.train()
    started = time.perf_counter()
    for step in range(start_step, steps):
        group = [next(stream) for _ in range(per_step)]
        mine = group[processes.rank * args.grad_accum : (processes.rank + 1) * args.grad_accum]
        units = processes.sum(float(sum(objective.units(m) for m in mine)))
        if units == 0:
            raise DomainbotError(f"Step {step + 1} has no trained tokens: check that the examples have answers.")
        step_loss = torch.zeros((), device=device, dtype=torch.float64)
        for index, micro in enumerate(mine):
            syncing = index == len(mine) - 1 or not processes.distributed
            sync = contextlib.nullcontext() if syncing else step_module.no_sync()  # type: ignore[operator]
            with sync, out_of_memory_hint(step + 1, objective.shape(micro)):
                with plan.context(device):
                    summed = step_module(micro)
                # DDP averages gradients over processes: scale by `world` so the sum over all units survives.
                scaler.scale(summed * processes.world / units).backward()
            step_loss += summed.detach().double()
        if args.max_grad_norm is not None:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(trainable, args.max_grad_norm)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()

        loss = processes.sum(float(step_loss.item())) / units
        tokens = int(processes.sum(float(sum(objective.real_tokens(m) for m in mine))))
        result.losses.append(loss)
        result.real_tokens += tokens
        elapsed = time.perf_counter() - started
        if processes.main:
            _log_step(run_dir / LOSS_LOG, step + 1, loss, float(scheduler.get_last_lr()[0]), tokens, elapsed)
        if on_step is not None and processes.main:
            on_step(step + 1, steps, loss, result.real_tokens / elapsed if elapsed else 0.0)
        last = step + 1 == steps
        if last or (args.save_every and (step + 1) % args.save_every == 0):
            _save_checkpoint(run_dir, step + 1, peft_model, optimizer, scheduler, scaler, fingerprint, args, processes)
    result.seconds = time.perf_counter() - started
    return result


def _log_step(path: Path, step: int, loss: float, lr: float, tokens: int, elapsed: float) -> None:
    record = {"step": step, "loss": round(loss, 6), "lr": lr, "tokens": tokens, "elapsed_s": round(elapsed, 3)}
    with path.open("a", encoding="utf-8") as log:
        log.write(json.dumps(record) + "\n")


def _read_losses(path: Path, upto: int) -> list[float]:
    """The losses of the steps before `upto` (a resumed run keeps its history and drops what it redoes)."""
    if not path.exists():
        return []
    kept = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    kept = [record for record in kept if record["step"] <= upto]
    path.write_text("".join(json.dumps(record) + "\n" for record in kept), encoding="utf-8")
    return [float(record["loss"]) for record in kept]


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first (one without its state file was cut off while being written)."""
    root = run_dir / CHECKPOINTS
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.name.startswith("step-") and (p / STATE_FILE).exists())


def _save_checkpoint(
    run_dir: Path,
    step: int,
    peft_model: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LambdaLR,
    scaler: torch.amp.GradScaler,
    fingerprint: Fingerprint,
    args: TrainArguments,
    processes: Processes,
) -> None:
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    if processes.main:
        final = run_dir / CHECKPOINTS / f"step-{step:06d}"
        partial = final.with_name(final.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        weights = {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(peft_model).items()}
        save_file(weights, partial / ADAPTER_WEIGHTS)
        torch.save(
            {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "rng": {"torch": torch.get_rng_state(), "python": random.getstate()},
            },
            partial / "trainer.pt",
        )
        # The state file is written last: a checkpoint without it is incomplete and never resumed from.
        state = {"step": step, **fingerprint.__dict__}
        (partial / STATE_FILE).write_text(json.dumps(state, indent=2), encoding="utf-8")
        shutil.rmtree(final, ignore_errors=True)
        partial.rename(final)
        for old in checkpoint_dirs(run_dir)[: -args.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
    processes.barrier()


def _load_checkpoint(
    run_dir: Path,
    peft_model: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LambdaLR,
    scaler: torch.amp.GradScaler,
    fingerprint: Fingerprint,
    device: torch.device,
) -> int:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    found = checkpoint_dirs(run_dir)
    if not found:
        raise DomainbotError(f"There is no checkpoint to resume from in {run_dir / CHECKPOINTS}.")
    latest = found[-1]
    state = json.loads((latest / STATE_FILE).read_text(encoding="utf-8"))
    reason = fingerprint.mismatch(state)
    if reason is not None:
        raise DomainbotError(f"Cannot resume from {latest.name}: {reason}. Start a new run instead of --resume.")
    set_peft_model_state_dict(peft_model, load_file(latest / ADAPTER_WEIGHTS, device=str(device)))
    saved = torch.load(latest / "trainer.pt", map_location=device, weights_only=False)
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    scaler.load_state_dict(saved["scaler"])
    torch.set_rng_state(saved["rng"]["torch"].cpu())
    random.setstate(saved["rng"]["python"])
    return int(state["step"])
