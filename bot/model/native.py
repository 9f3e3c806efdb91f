"""The native backend: LLaMA-architecture models in plain torch (see `llama.py`), with LoRA merged at load."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from bot.errors import AdapterError
from bot.model.backend import LocalBackend, Message, TextDecoder, eos_token_ids
from bot.model.chat_format import ChatFormat
from bot.model.llama import Llama, load_llama, read_config
from bot.model.loader import cannot_load, no_chat_template
from bot.model.text_formats import PromptFormat


def adapter_unsupported_reason(adapter: Path) -> str | None:
    """Why `merge_lora` cannot apply this adapter (transformers + peft still can), or None."""
    try:
        config: dict[str, Any] = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "adapter_config.json is missing or unreadable"
    if config.get("peft_type") != "LORA":
        return f"peft_type {config.get('peft_type')!r} is not LORA"
    for flag in ("use_dora", "fan_in_fan_out", "modules_to_save", "rank_pattern", "alpha_pattern"):
        if config.get(flag):
            return f"{flag} is set"
    if not (adapter / "adapter_model.safetensors").exists():
        return "adapter_model.safetensors is missing"
    return None


def merge_lora(model: Llama, adapter: Path) -> None:
    """Add each LoRA pair's update B @ A * scale to the weight it adapts (peft's LoRA, merged once)."""
    from safetensors.torch import load_file

    config = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
    rank, alpha = int(config["r"]), float(config["lora_alpha"])
    scale = alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank
    tensors = load_file(adapter / "adapter_model.safetensors")
    pairs = [key.removesuffix(".lora_A.weight") for key in tensors if key.endswith(".lora_A.weight")]
    if not pairs:
        raise ValueError("the adapter holds no LoRA weights")
    for prefix in pairs:
        module_path = prefix.removeprefix("base_model.model.")
        try:
            linear = model.get_submodule(module_path)
        except AttributeError:
            raise ValueError(f"it adapts {module_path}, which this model does not have") from None
        if not isinstance(linear, torch.nn.Linear):
            raise ValueError(f"it adapts {module_path}, which is not a linear layer here")
        a, b = tensors[prefix + ".lora_A.weight"].float(), tensors[prefix + ".lora_B.weight"].float()
        weight = linear.weight  # (out, in)
        if (b.shape[0], a.shape[1]) != tuple(weight.shape):
            update = (b.shape[0], a.shape[1])
            raise ValueError(f"{module_path} is {tuple(weight.shape)}, the adapter's update is {update}")
        with torch.no_grad():
            weight += (b @ a * scale).to(device=weight.device, dtype=weight.dtype)


class NativeLlamaBackend(LocalBackend):
    """Llama models on the CPU without transformers: fast to start, with a preallocated KV cache."""

    name = "native"

    def __init__(
        self,
        folder: Path,
        model_name: str,
        device: torch.device,
        dtype: torch.dtype,
        adapter: Path | None = None,
        prompt_format: PromptFormat = "chat",
    ) -> None:
        self.prompt_format = prompt_format
        self.format = ChatFormat(folder)
        if prompt_format == "chat" and not self.format.has_template:
            raise no_chat_template(model_name)
        try:
            self.model = load_llama(folder, dtype, device)
        except Exception as exc:  # safetensors, torch and json each raise their own types for a bad folder
            raise cannot_load(folder, exc) from exc
        self.model_name = model_name
        self.device = device
        self.adapter: str | None = None
        if adapter is not None:
            try:
                merge_lora(self.model, adapter)
            except (ValueError, KeyError, OSError) as exc:
                raise AdapterError(f"Adapter {adapter} does not fit model {model_name}: {exc}") from exc
            self.adapter = adapter.name
        generation_file = folder / "generation_config.json"
        generation = json.loads(generation_file.read_text(encoding="utf-8")) if generation_file.exists() else {}
        configured = generation.get("eos_token_id", read_config(folder).get("eos_token_id"))
        self.eos_ids = eos_token_ids(configured, self.format.eos_token_id)

    def encode_chat(self, messages: Sequence[Message]) -> list[int]:
        return self.format.encode_chat(messages)

    def encode_text(self, text: str) -> list[int]:
        return self.format.encode(text, add_special_tokens=True)

    def context_window(self) -> int:
        return self.model.shape.max_positions

    def text_decoder(self) -> TextDecoder:
        return self.format

    def new_forward(self, max_len: int) -> Callable[[torch.Tensor], torch.Tensor]:
        cache = self.model.new_cache(max_len)

        def forward(ids: torch.Tensor) -> torch.Tensor:
            return self.model(ids.to(self.device), cache)

        return forward
