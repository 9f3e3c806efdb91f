"""A LLaMA-architecture decoder in plain torch, for fast start-up and decoding on the CPU.

Loading a model through transformers spends most of its time importing modules (about 3 s on two cores, far
more than reading the weights). This module reads the same safetensors folder directly and decodes over a
preallocated KV cache. It covers the plain Llama shape (RMSNorm, rotary embeddings with the default schedule,
grouped-query attention, SwiGLU MLP); `unsupported_reason` names anything else, and such models go through
transformers instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class LlamaShape:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float
    rope_theta: float
    max_positions: int
    tie_word_embeddings: bool

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> LlamaShape:
        heads = int(config["num_attention_heads"])
        rope = config.get("rope_parameters") or {}
        return cls(
            vocab_size=int(config["vocab_size"]),
            hidden_size=int(config["hidden_size"]),
            intermediate_size=int(config["intermediate_size"]),
            num_layers=int(config["num_hidden_layers"]),
            num_heads=heads,
            num_kv_heads=int(config.get("num_key_value_heads") or heads),
            head_dim=int(config.get("head_dim") or config["hidden_size"] // heads),
            rms_norm_eps=float(config.get("rms_norm_eps", 1e-6)),
            rope_theta=float(rope.get("rope_theta") or config.get("rope_theta") or 10000.0),
            max_positions=int(config.get("max_position_embeddings", 2048)),
            tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
        )


def read_config(folder: Path) -> dict[str, Any]:
    config: dict[str, Any] = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    return config


def unsupported_reason(config: dict[str, Any]) -> str | None:
    """Why this module cannot run the model described by `config`, or None when it can."""
    if config.get("model_type") != "llama":
        return f"model_type is {config.get('model_type')!r}, not 'llama'"
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    rope_type = rope.get("rope_type") or rope.get("type") or "default"
    if rope_type != "default":
        return f"rotary scaling {rope_type!r} is not implemented here"
    for flag in ("attention_bias", "mlp_bias"):
        if config.get(flag):
            return f"{flag} is set"
    if config.get("hidden_act", "silu") != "silu":
        return f"activation {config.get('hidden_act')!r} is not silu"
    if config.get("pretraining_tp", 1) not in (None, 1):
        return "pretraining_tp > 1"
    return None


# Modules take the device they are built on: building on "meta" allocates nothing, and passing it here rather
# than through a `with torch.device("meta")` block avoids a one-off torch import costing over a second.
Device = torch.device | str | None


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float, device: Device = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size, device=device))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(dtype)


class Embedding(nn.Module):
    """A token embedding table; nn.Embedding would random-initialise it, which on "meta" imports torch's compiler."""

    def __init__(self, vocab_size: int, hidden_size: int, device: Device = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(vocab_size, hidden_size, device=device))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.weight)


def rotary_frequencies(shape: LlamaShape) -> torch.Tensor:
    """The default rotary schedule: theta^(-2i/D) for i < D/2, in float32."""
    return 1.0 / (shape.rope_theta ** (torch.arange(0, shape.head_dim, 2, dtype=torch.float32) / shape.head_dim))


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class KVCache:
    """Keys and values of every layer, preallocated for the whole generation: (layers, 1, kv_heads, max_len, D)."""

    def __init__(self, shape: LlamaShape, max_len: int, dtype: torch.dtype, device: torch.device) -> None:
        size = (shape.num_layers, 1, shape.num_kv_heads, max_len, shape.head_dim)
        self.keys = torch.empty(size, dtype=dtype, device=device)
        self.values = torch.empty(size, dtype=dtype, device=device)
        self.length = 0
        self.max_len = max_len


class Attention(nn.Module):
    def __init__(self, shape: LlamaShape, device: Device = None) -> None:
        super().__init__()
        self.shape = shape
        q_size, kv_size = shape.num_heads * shape.head_dim, shape.num_kv_heads * shape.head_dim
        self.q_proj = nn.Linear(shape.hidden_size, q_size, bias=False, device=device)
        self.k_proj = nn.Linear(shape.hidden_size, kv_size, bias=False, device=device)
        self.v_proj = nn.Linear(shape.hidden_size, kv_size, bias=False, device=device)
        self.o_proj = nn.Linear(q_size, shape.hidden_size, bias=False, device=device)

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: KVCache, layer: int
    ) -> torch.Tensor:
        s = self.shape
        batch, steps, _ = x.shape  # (1, T, C)
        q = self.q_proj(x).view(batch, steps, s.num_heads, s.head_dim).transpose(1, 2)  # (1, H, T, D)
        k = self.k_proj(x).view(batch, steps, s.num_kv_heads, s.head_dim).transpose(1, 2)  # (1, KVH, T, D)
        v = self.v_proj(x).view(batch, steps, s.num_kv_heads, s.head_dim).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        start, end = cache.length, cache.length + steps
        cache.keys[layer, :, :, start:end] = k
        cache.values[layer, :, :, start:end] = v
        keys = cache.keys[layer, :, :, :end]  # (1, KVH, end, D)
        values = cache.values[layer, :, :, :end]
        # New tokens see the cache and each other causally; a single new token sees everything before it.
        mask = None
        if steps > 1:
            mask = torch.ones(steps, end, dtype=torch.bool, device=x.device).tril(diagonal=start)
        # Grouped-query attention: each key/value head serves num_heads / num_kv_heads query heads, without copies.
        out = F.scaled_dot_product_attention(
            q, keys, values, attn_mask=mask, enable_gqa=s.num_kv_heads != s.num_heads
        )  # (1, H, T, D)
        return self.o_proj(out.transpose(1, 2).reshape(batch, steps, s.num_heads * s.head_dim))


class MLP(nn.Module):
    def __init__(self, shape: LlamaShape, device: Device = None) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(shape.hidden_size, shape.intermediate_size, bias=False, device=device)
        self.up_proj = nn.Linear(shape.hidden_size, shape.intermediate_size, bias=False, device=device)
        self.down_proj = nn.Linear(shape.intermediate_size, shape.hidden_size, bias=False, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, shape: LlamaShape, device: Device = None) -> None:
        super().__init__()
        self.self_attn = Attention(shape, device)
        self.mlp = MLP(shape, device)
        self.input_layernorm = RMSNorm(shape.hidden_size, shape.rms_norm_eps, device)
        self.post_attention_layernorm = RMSNorm(shape.hidden_size, shape.rms_norm_eps, device)

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: KVCache, layer: int
    ) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, cache, layer)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaBody(nn.Module):
    """Parameter names mirror transformers' `model.*`, so a checkpoint's tensors load by name."""

    def __init__(self, shape: LlamaShape, device: Device = None) -> None:
        super().__init__()
        self.embed_tokens = Embedding(shape.vocab_size, shape.hidden_size, device)
        self.layers = nn.ModuleList(DecoderLayer(shape, device) for _ in range(shape.num_layers))
        self.norm = RMSNorm(shape.hidden_size, shape.rms_norm_eps, device)


class Llama(nn.Module):
    inv_freq: torch.Tensor

    def __init__(self, shape: LlamaShape, device: Device = None) -> None:
        super().__init__()
        self.shape = shape
        self.model = LlamaBody(shape, device)
        self.lm_head = nn.Linear(shape.hidden_size, shape.vocab_size, bias=False, device=device)
        self.register_buffer("inv_freq", rotary_frequencies(shape), persistent=False)

    def new_cache(self, max_len: int) -> KVCache:
        weight = self.lm_head.weight
        return KVCache(self.shape, max_len, weight.dtype, weight.device)

    def forward(self, input_ids: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Logits for the last position, (V,), after appending `input_ids` (1, T) to the cache."""
        steps = input_ids.shape[1]
        if cache.length + steps > cache.max_len:
            raise ValueError(f"KV cache holds {cache.max_len} positions, asked for {cache.length + steps}")
        x = self.model.embed_tokens(input_ids)  # (1, T, C)
        positions = torch.arange(cache.length, cache.length + steps, device=x.device, dtype=torch.float32)
        freqs = torch.outer(positions, self.inv_freq)  # (T, D/2)
        angles = torch.cat((freqs, freqs), dim=-1)
        cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)  # (T, D), broadcast over (1, H, T, D)
        for index, layer in enumerate(self.model.layers):
            x = layer(x, cos, sin, cache, index)
        cache.length += steps
        last = self.model.norm(x[:, -1])  # (1, C)
        return self.lm_head(last)[0]


def load_llama(folder: Path, dtype: torch.dtype, device: torch.device) -> Llama:
    """Build the model on the meta device, then take the checkpoint's tensors as its parameters."""
    from safetensors.torch import load_file

    from bot.model.embedded import serving_copy_name

    shape = LlamaShape.from_config(read_config(folder))
    model = Llama(shape, device="meta")
    state: dict[str, torch.Tensor] = {}
    index = folder / "model.safetensors.index.json"
    files = ["model.safetensors"]
    # domainbot's model cache keeps a copy already cast to the serving dtype (see embedded.py).
    serving_copy = serving_copy_name(dtype)
    if (folder / serving_copy).exists():
        files = [serving_copy]
    elif index.exists():
        files = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
    for name in files:
        state.update(load_file(folder / name, device=str(device)))
    if shape.tie_word_embeddings or "lm_head.weight" not in state:
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    state = {key: value.to(dtype) for key, value in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    if missing or unexpected:
        raise ValueError(f"checkpoint does not match its config (missing {missing}, unexpected {unexpected})")
    # Buffers built on the meta device hold no data; the rotary frequencies are recomputed for real.
    model.inv_freq = rotary_frequencies(shape).to(device)
    return model.eval()
