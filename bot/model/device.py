"""Where the model runs and in which dtype."""

from __future__ import annotations

import torch

from bot.errors import DomainbotError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def select_device(preference: str) -> torch.device:
    """'auto' picks CUDA, then Apple MPS, then CPU; an explicit choice must be available."""
    cuda = torch.cuda.is_available()
    mps = torch.backends.mps.is_available()
    if preference == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    available = {"cpu": True, "cuda": cuda, "mps": mps}
    if preference not in available:
        raise DomainbotError(f"Unknown device {preference!r}: expected one of auto, cpu, cuda, mps.")
    if not available[preference]:
        raise DomainbotError(
            f"Device {preference!r} was requested (DOMAINBOT_DEVICE) but this torch build cannot use it here. "
            "Set DOMAINBOT_DEVICE=auto or cpu."
        )
    return torch.device(preference)


def cpu_has_native_bf16() -> bool:
    """bfloat16 matmuls are only fast on CPUs with AVX512-BF16 or AMX; elsewhere they are emulated."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def select_dtype(preference: str, device: torch.device) -> torch.dtype:
    """'auto': bfloat16 on CUDA (float16 on cards without it) and on bf16-capable CPUs, float16 on MPS."""
    if preference != "auto":
        return DTYPES[preference]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.bfloat16 if cpu_has_native_bf16() else torch.float32
