"""Convert a peft LoRA adapter into a GGUF LoRA adapter, so llama.cpp serves what training produced.

llama.cpp applies a LoRA file on top of a GGUF base model. Its file holds, for every adapted weight `W` of the
base, the pair `blk.N.<tensor>.weight.lora_a` (peft's lora_A, (r, in)) and `.lora_b` (peft's lora_B, (out, r)),
plus `adapter.lora.alpha`; llama.cpp adds `B @ A * alpha / r` to `W @ x`, as peft does.

One difference needs care: llama.cpp's converter stores the rows of LLaMA's q_proj and k_proj weights permuted
(its rotary embedding pairs neighbouring dimensions, Hugging Face's pairs the two halves of each head), and
transformers un-permutes them when it loads a GGUF. An adapter trained on the un-permuted model therefore has its
lora_B rows for q_proj and k_proj permuted here the same way (n_head for q, n_head_kv for k); lora_A acts on the
input side, which is not permuted.

The converted file is cached beside the adapter as `adapter.gguf`, tagged with a fingerprint of the adapter's
files and of the base's attention layout, so activating an adapter converts it once.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.errors import AdapterError

if TYPE_CHECKING:
    import numpy as np

GGUF_ADAPTER_FILE = "adapter.gguf"
FINGERPRINT_KEY = "domainbot.adapter.fingerprint"
# Bump when the conversion changes, so files converted before are converted again.
FORMAT_VERSION = 1
# Architectures whose llama.cpp conversion permutes the q/k rows as described above; adapters for other
# architectures are refused rather than converted by a guess.
PERMUTED_ARCHITECTURES = frozenset({"llama"})
PEFT_PREFIX = "base_model.model."


@dataclass(frozen=True)
class BaseModelShape:
    """What a GGUF base model says about the weights an adapter may change."""

    path: Path
    architecture: str
    n_head: int
    n_head_kv: int
    n_layers: int
    # GGUF tensor name (e.g. 'blk.0.attn_q.weight') -> (out, in), the torch order of its dimensions.
    tensors: dict[str, tuple[int, ...]]

    @classmethod
    def read(cls, path: Path) -> BaseModelShape:
        from gguf import GGUFReader

        try:
            reader = GGUFReader(path)
            fields = {name: field.contents() for name, field in reader.fields.items()}
            architecture = str(fields["general.architecture"])
            shape = cls(
                path=path,
                architecture=architecture,
                n_head=int(fields[f"{architecture}.attention.head_count"]),
                n_head_kv=int(fields.get(f"{architecture}.attention.head_count_kv") or 0)
                or int(fields[f"{architecture}.attention.head_count"]),
                n_layers=int(fields[f"{architecture}.block_count"]),
                # GGUF lists dimensions innermost first: (in, out) for a linear weight.
                tensors={t.name: tuple(int(d) for d in reversed(t.shape)) for t in reader.tensors},
            )
        except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
            raise AdapterError(
                f"Cannot read the base model {path} to convert an adapter for it: {exc}. Expected a GGUF model file."
            ) from exc
        return shape

    @property
    def fingerprint(self) -> str:
        return f"{self.architecture}:{self.n_head}:{self.n_head_kv}"


def permute_rows(weight: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's q/k row order for (out, ...) rows of `n_head` heads: within each head, the first and second
    halves are interleaved (row i of half 0, row i of half 1, ...). transformers' GGUF loader undoes exactly this."""
    head_dim = weight.shape[0] // n_head
    return (
        weight.reshape(n_head, 2, head_dim // 2, *weight.shape[1:])  # (heads, half, pair, ...)
        .swapaxes(1, 2)  # (heads, pair, half, ...)
        .reshape(weight.shape)
    )


def gguf_adapter(adapter: Path, base_gguf: Path) -> Path:
    """The GGUF LoRA file for the peft adapter folder `adapter` on the base model `base_gguf`: the cached
    `adapter.gguf` when it was made from these files, else converted now. Raises AdapterError for an adapter
    that cannot be served on this base model."""
    config_file, weights_file = adapter / "adapter_config.json", adapter / "adapter_model.safetensors"
    if not config_file.is_file() or not weights_file.is_file():
        raise AdapterError(
            f"Adapter {adapter} is not a peft adapter folder: expected adapter_config.json and "
            "adapter_model.safetensors in it."
        )
    base = BaseModelShape.read(base_gguf)
    fingerprint = _fingerprint(config_file, weights_file, base)
    target = adapter / GGUF_ADAPTER_FILE
    if _recorded_fingerprint(target) == fingerprint:
        return target
    alpha, tensors = lora_tensors(adapter, base)
    _write(target, base.architecture, alpha, tensors, fingerprint)
    return target


def lora_tensors(adapter: Path, base: BaseModelShape) -> tuple[float, dict[str, np.ndarray]]:
    """The alpha and the GGUF tensors (name -> float32 array) of the adapter, checked against the base model."""
    from safetensors.torch import load_file

    config: dict[str, Any] = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
    reason = _unsupported_reason(config)
    if reason is not None:
        raise AdapterError(
            f"Adapter {adapter} cannot be converted for llama.cpp: {reason}. "
            "Set DOMAINBOT_BACKEND=native or transformers to serve it."
        )
    if base.architecture not in PERMUTED_ARCHITECTURES:
        raise AdapterError(
            f"Adapter {adapter} cannot be converted for llama.cpp: the base model's architecture is "
            f"{base.architecture!r}, and only {', '.join(sorted(PERMUTED_ARCHITECTURES))} is supported. "
            "Set DOMAINBOT_BACKEND=native or transformers to serve it."
        )
    alpha = float(config["lora_alpha"])
    weights = {key: value.float().numpy() for key, value in load_file(adapter / "adapter_model.safetensors").items()}
    if any(".lora_embedding_" in key for key in weights):
        raise AdapterError(f"Adapter {adapter} adapts the token embeddings, which llama.cpp's LoRA files cannot hold.")
    modules = sorted(key.removesuffix(".lora_A.weight") for key in weights if key.endswith(".lora_A.weight"))
    if not modules:
        raise AdapterError(f"Adapter {adapter} holds no LoRA weights (no *.lora_A.weight tensors).")
    names = _tensor_names(base)
    tensors: dict[str, np.ndarray] = {}
    for module in modules:
        a, b = weights[f"{module}.lora_A.weight"], weights.get(f"{module}.lora_B.weight")  # (r, in), (out, r)
        module_path = module.removeprefix(PEFT_PREFIX)
        if b is None:
            raise AdapterError(f"Adapter {adapter} has lora_A but no lora_B for {module_path}.")
        name = names.get_name(module_path)
        expected = base.tensors.get(f"{name}.weight") if name else None
        if name is None or expected is None:
            raise AdapterError(
                f"Adapter {adapter} was made for another base model: it adapts {module_path}, which "
                f"{base.path.name} ({base.n_layers} layers) does not have."
            )
        if (b.shape[0], a.shape[1]) != expected:
            raise AdapterError(
                f"Adapter {adapter} was made for another base model: {module_path} is {_dims(expected)} in "
                f"{base.path.name}, the adapter's update is {_dims((b.shape[0], a.shape[1]))}."
            )
        # llama.cpp scales every pair by alpha / r with the one alpha of the file; a module whose peft scale differs
        # (rsLoRA, rank or alpha patterns) carries the difference in its B.
        rank = a.shape[0]
        served_scale = alpha / rank if alpha else 1.0
        b = b * (_peft_scale(config, module_path, rank) / served_scale)
        if name.endswith(".attn_q"):
            b = permute_rows(b, base.n_head)
        elif name.endswith(".attn_k"):
            b = permute_rows(b, base.n_head_kv)
        tensors[f"{name}.weight.lora_a"] = a.astype("float32")
        tensors[f"{name}.weight.lora_b"] = b.astype("float32")
    return alpha, tensors


def _unsupported_reason(config: dict[str, Any]) -> str | None:
    """Why a LoRA file cannot express this adapter, or None."""
    if config.get("peft_type") != "LORA":
        return f"peft_type {config.get('peft_type')!r} is not LORA"
    for flag in ("use_dora", "fan_in_fan_out", "modules_to_save"):
        if config.get(flag):
            return f"{flag} is set"
    return None


def _peft_scale(config: dict[str, Any], module_path: str, rank: int) -> float:
    """The factor peft multiplies this module's B @ A by (peft matches pattern keys against the module path's
    end, as here)."""
    alpha = float(config["lora_alpha"])
    for key, value in (config.get("alpha_pattern") or {}).items():
        if re.match(rf"(.*\.)?({key})$", module_path):
            alpha = float(value)
            break
    return alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank


def _tensor_names(base: BaseModelShape) -> Any:
    import gguf

    architecture = next((a for a, name in gguf.MODEL_ARCH_NAMES.items() if name == base.architecture), None)
    if architecture is None:
        raise AdapterError(f"The gguf package does not know the architecture {base.architecture!r} of {base.path}.")
    return gguf.get_tensor_name_map(architecture, base.n_layers)


def _dims(shape: tuple[int, ...]) -> str:
    return "×".join(str(d) for d in shape)


def _fingerprint(config_file: Path, weights_file: Path, base: BaseModelShape) -> str:
    digest = hashlib.sha256(f"{FORMAT_VERSION}|{base.fingerprint}|".encode())
    for file in (config_file, weights_file):
        digest.update(file.read_bytes())
    return digest.hexdigest()


def _recorded_fingerprint(target: Path) -> str | None:
    if not target.is_file():
        return None
    from gguf import GGUFReader

    try:
        field = GGUFReader(target).fields.get(FINGERPRINT_KEY)
        return None if field is None else str(field.contents())
    except (OSError, ValueError, KeyError, IndexError):
        return None  # a damaged file is converted again


def _write(target: Path, architecture: str, alpha: float, tensors: dict[str, np.ndarray], fingerprint: str) -> None:
    """Write beside the target, then move over it: a reader sees the old file or the new one, never half."""
    import gguf

    staging = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial")
    try:
        writer = gguf.GGUFWriter(staging, architecture)
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
        writer.add_string(FINGERPRINT_KEY, fingerprint)
        for name, tensor in tensors.items():
            writer.add_tensor(name, tensor)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(staging, target)
    except OSError as exc:
        raise AdapterError(
            f"Cannot write the converted adapter {target}: {exc}. Check that its folder is writable."
        ) from exc
    finally:
        staging.unlink(missing_ok=True)
