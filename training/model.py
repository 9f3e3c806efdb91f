"""The model being trained: a transformers causal LM with peft LoRA layers, and the answer-only loss."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bot.errors import DomainbotError
from bot.model.device import cpu_has_native_bf16
from training.arguments import LoraArguments, Precision
from training.attention import attention_for
from training.packing import Batch


@dataclass(frozen=True)
class PrecisionPlan:
    """Frozen base weights in `weights`; LoRA weights and the optimiser in fp32; matmuls under `autocast`."""

    name: str
    weights: torch.dtype
    autocast: torch.dtype | None

    @property
    def needs_scaler(self) -> bool:
        return self.autocast == torch.float16

    def context(self, device: torch.device) -> contextlib.AbstractContextManager[Any]:
        if self.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.autocast)


def plan_precision(precision: Precision, device: torch.device) -> PrecisionPlan:
    if precision == "auto":
        if device.type == "cuda":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        elif device.type == "cpu" and cpu_has_native_bf16():
            precision = "bf16"
        else:
            precision = "fp32"
    if precision == "fp16" and device.type == "cpu":
        raise DomainbotError("fp16 training needs a GPU; on the CPU use --precision bf16 or fp32.")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise DomainbotError("This GPU has no bfloat16; use --precision fp16 or fp32.")
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return PrecisionPlan(precision, dtype, None if dtype == torch.float32 else dtype)


def linear_module_names(model: nn.Module) -> list[str]:
    """The distinct last names of the linear layers LoRA can adapt (the output head excluded)."""
    names = {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, nn.Linear)}
    return sorted(names - {"lm_head"})


def load_for_training(
    folder: Path,
    device: torch.device,
    plan: PrecisionPlan,
    lora: LoraArguments,
    seed: int,
    gradient_checkpointing: bool = False,
) -> Any:
    """The base model, frozen, with fresh LoRA layers on `lora.target_modules`."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    try:
        base = AutoModelForCausalLM.from_pretrained(
            folder, dtype=plan.weights, attn_implementation=attention_for(device)
        )
    except (OSError, ValueError) as exc:
        raise DomainbotError(f"Cannot load a causal language model from {folder}: {exc}") from exc
    base.config.use_cache = False
    known = linear_module_names(base)
    targets = lora.target_modules
    missing = [name for name in targets if name != "all-linear" and name not in known]
    if missing:
        raise DomainbotError(
            f"Target module(s) {', '.join(missing)} do not exist in {folder.name}. "
            f"Its linear layers are: {', '.join(known)} (or use all-linear)."
        )
    torch.manual_seed(seed)
    config = LoraConfig(
        r=lora.rank,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules="all-linear" if "all-linear" in targets else targets,
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(base, config)
    if gradient_checkpointing:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        base.enable_input_require_grads()
    return model.to(device)


class AnswerLoss(nn.Module):
    """Summed cross-entropy on the trained positions only.

    The output head runs on the positions whose next token is trained, not on every position: with prompts
    masked that skips most of the (tokens x vocabulary) projection, the largest single matmul in a small model.
    """

    def __init__(self, peft_model: Any) -> None:
        super().__init__()
        self.peft_model = peft_model

    def forward(self, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(trained_logits(self.peft_model, batch), batch.targets, reduction="sum")


def trained_logits(peft_model: Any, batch: Batch) -> torch.Tensor:
    """Logits at the positions whose next token is trained, (N, V) in fp32 (a peft model or a plain causal LM)."""
    causal = peft_model.get_base_model() if hasattr(peft_model, "get_base_model") else peft_model
    hidden = causal.get_decoder()(
        input_ids=batch.input_ids, position_ids=batch.position_ids, use_cache=False
    ).last_hidden_state  # (B, T, H)
    picked = hidden.flatten(0, 1)[batch.target_index]  # (N, H)
    return causal.get_output_embeddings()(picked).float()  # (N, V)


def sequence_logprobs(peft_model: Any, batch: Batch) -> torch.Tensor:
    """Summed log-probability of each row's trained tokens, (B,): what preference losses compare."""
    logits = trained_logits(peft_model, batch)
    token_logprobs = -F.cross_entropy(logits, batch.targets, reduction="none")  # (N,)
    rows, width = batch.input_ids.shape
    row_of_target = torch.div(batch.target_index, width, rounding_mode="floor")
    return torch.zeros(rows, device=logits.device).index_add(0, row_of_target, token_logprobs)


@contextlib.contextmanager
def out_of_memory_hint(step: int, batch_shape: tuple[int, ...]) -> Iterator[None]:
    """Out of memory becomes one message with the knobs that help; nothing else changes state."""
    try:
        yield
    except (torch.OutOfMemoryError, RuntimeError) as exc:
        text = str(exc).lower()
        if not isinstance(exc, torch.OutOfMemoryError) and "out of memory" not in text and "can't allocate" not in text:
            raise
        raise DomainbotError(
            f"Out of memory at step {step} with a micro-batch of {batch_shape[0]} x {batch_shape[1]} tokens. "
            "Lower --micro-batch-size or --max-seq-len (raise --grad-accum to keep the effective batch), "
            "or add --gradient-checkpointing."
        ) from exc
