"""Training: dataset builders, LoRA rounds (SFT, DPO, KTO), evaluation, the adapter registry, merge and publish.

Modules, in the order a round uses them: `datasets` (loaders and typed records), `export` (feedback store to
SFT/DPO/KTO files), `encoding` (answer-only labels through the chat template), `packing`, `arguments`, `model`
(peft LoRA and the loss), `loop` (the shared training loop), `sft` / `preference` (the rounds), `rounds`
(a round from start to registration), `evaluate`, `registry`, `cycle` (the feedback loop in one call),
`merge`, `publish`.

The bot imports `training.registry` at every start, so this package imports a module only when one of the
names below is first used.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "AdapterCard": "training.registry",
    "AdapterRegistry": "training.registry",
    "LoraArguments": "training.arguments",
    "PreferenceArguments": "training.arguments",
    "SFTArguments": "training.arguments",
    "export_feedback": "training.export",
    "load_kto": "training.datasets",
    "load_preferences": "training.datasets",
    "load_sft": "training.datasets",
    "merge_adapter": "training.merge",
    "run_cycle": "training.cycle",
    "train_dpo": "training.preference",
    "train_kto": "training.preference",
    "train_sft": "training.sft",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'training' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
