"""Training arguments: typed, documented, validated before any model is loaded."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Every linear layer of a LLaMA block: LoRA on all of them learns most per parameter.
LLAMA_LINEAR_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

Precision = Literal["auto", "fp32", "bf16", "fp16"]


class LoraArguments(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rank: int = Field(default=16, ge=1, le=1024, description="LoRA rank r: the size of each low-rank update.")
    alpha: int = Field(default=32, gt=0, description="LoRA alpha; updates are scaled by alpha / rank.")
    dropout: float = Field(default=0.0, ge=0, lt=1, description="Dropout on the LoRA input during training.")
    target_modules: list[str] = Field(
        default_factory=lambda: list(LLAMA_LINEAR_MODULES),
        description="Names of the linear layers to adapt (e.g. q_proj v_proj), or 'all-linear'.",
    )

    @field_validator("target_modules")
    @classmethod
    def _some_modules(cls, value: list[str]) -> list[str]:
        names = [name.strip() for name in value if name.strip()]
        if not names:
            raise ValueError("name at least one target module, e.g. q_proj v_proj, or all-linear")
        return names


class TrainArguments(BaseModel):
    """What every round shares: the model, the batches, the optimiser, checkpoints."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(default=None, description="A local model folder; None trains the configured model.")
    prompt_format: Literal["chat", "alpaca", "koalpaca"] = Field(
        "chat", description="How conversations become text: the model's chat template, or Alpaca/KoAlpaca text."
    )
    lora: LoraArguments = Field(default_factory=lambda: LoraArguments())
    max_seq_len: int = Field(default=1024, ge=16, description="Tokens per training row; longer examples are truncated.")
    micro_batch_size: int = Field(default=4, ge=1, description="Rows per forward pass on each process.")
    grad_accum: int = Field(default=1, ge=1, description="Micro-batches per optimiser step on each process.")
    packing: bool = Field(default=True, description="Pack short examples into full rows (no attention between them).")
    learning_rate: float = Field(default=2e-4, gt=0, description="Peak learning rate (AdamW).")
    weight_decay: float = Field(default=0.0, ge=0)
    warmup_steps: int = Field(default=0, ge=0, description="Steps of linear warm-up before the cosine decay.")
    epochs: float = Field(default=1.0, gt=0, description="Passes over the data (fractions allowed).")
    max_steps: int | None = Field(default=None, ge=1, description="Stop after this many optimiser steps.")
    min_steps: int = Field(
        default=0, ge=0, description="Train at least this many steps, repeating the data (a few corrections)."
    )
    seed: int = Field(default=0, description="Seeds the data order, LoRA initialisation and dropout.")
    precision: Precision = Field(
        "auto", description="fp32, bf16 or fp16 compute; auto: bf16 on CUDA and capable CPUs, else fp32."
    )
    gradient_checkpointing: bool = Field(default=False, description="Recompute activations in backward to save memory.")
    save_every: int = Field(default=0, ge=0, description="Checkpoint every N steps (0: only at the end).")
    keep_checkpoints: int = Field(default=2, ge=1, description="Checkpoints kept on disk; older ones are removed.")
    max_grad_norm: float | None = Field(default=1.0, gt=0, description="Clip the gradient norm; None: no clipping.")


class SFTArguments(TrainArguments):
    data: Path = Field(description="The dataset file.")
    format: Literal["alpaca", "koalpaca", "chat", "feedback"] = Field(description="How the dataset file is laid out.")


class PreferenceArguments(TrainArguments):
    data: Path = Field(description="The preference export (DPO pairs or KTO rows).")
    beta: float = Field(default=0.1, gt=0, description="Strength of the pull towards the reference (base) model.")
    learning_rate: float = Field(default=5e-5, gt=0, description="Peak learning rate (AdamW).")
    packing: bool = Field(default=False, description="Preference rows are scored per example; packing is not used.")

    @field_validator("packing")
    @classmethod
    def _no_packing(cls, value: bool) -> bool:
        if value:
            raise ValueError("preference rounds score each answer on its own row; packing is not supported")
        return value
