"""A BERT sentence encoder in plain torch, for sentence-transformers models of the common shape.

Importing sentence-transformers pulls in transformers and costs several seconds on two cores before a single
text is embedded. Models that are a plain BERT with mean pooling (all-MiniLM-L6-v2, the default, among them)
are run here instead, from the same folder and weights, with the same tokenizer; `unsupported_reason` names
anything else, and such models go through sentence-transformers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

TRANSFORMER = "sentence_transformers.models.Transformer"
POOLING = "sentence_transformers.models.Pooling"
NORMALIZE = "sentence_transformers.models.Normalize"


def _read(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def unsupported_reason(folder: Path) -> str | None:
    """Why this encoder cannot run the model in `folder`, or None when it can."""
    try:
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
        config = _read(folder / "config.json")
    except (OSError, ValueError):
        return "modules.json or config.json is missing or unreadable"
    types = [m.get("type") for m in modules]
    if types[:2] != [TRANSFORMER, POOLING] or any(t != NORMALIZE for t in types[2:]) or modules[0].get("path"):
        return f"modules {types} are not Transformer + Pooling (+ Normalize)"
    pooling = _read(folder / modules[1]["path"] / "config.json")
    modes = [key for key, on in pooling.items() if key.startswith("pooling_mode") and on]
    if modes != ["pooling_mode_mean_tokens"]:
        return f"pooling {modes} is not mean pooling"
    if config.get("model_type") != "bert" or config.get("position_embedding_type", "absolute") != "absolute":
        return f"model_type {config.get('model_type')!r} is not a BERT with absolute positions"
    if config.get("hidden_act") != "gelu":
        return f"activation {config.get('hidden_act')!r} is not gelu"
    if not (folder / "tokenizer.json").exists() or not (folder / "model.safetensors").exists():
        return "tokenizer.json or model.safetensors is missing"
    return None


def _table(rows: int, cols: int) -> nn.Parameter:
    return nn.Parameter(torch.empty(rows, cols, device="meta"))


class _Layer(nn.Module):
    """One BERT encoder layer; attribute names follow the checkpoint's `encoder.layer.N.*`."""

    def __init__(self, hidden: int, heads: int, intermediate: int, eps: float) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(hidden, hidden, device="meta")
        self.key = nn.Linear(hidden, hidden, device="meta")
        self.value = nn.Linear(hidden, hidden, device="meta")
        self.attention_out = nn.Linear(hidden, hidden, device="meta")
        self.attention_norm = nn.LayerNorm(hidden, eps=eps, device="meta")
        self.intermediate = nn.Linear(hidden, intermediate, device="meta")
        self.output = nn.Linear(intermediate, hidden, device="meta")
        self.output_norm = nn.LayerNorm(hidden, eps=eps, device="meta")

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch, steps, hidden = x.shape  # (B, T, C)

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, steps, self.heads, hidden // self.heads).transpose(1, 2)  # (B, H, T, D)

        attended = F.scaled_dot_product_attention(heads(self.query(x)), heads(self.key(x)), heads(self.value(x)), mask)
        attended = attended.transpose(1, 2).reshape(batch, steps, hidden)
        x = self.attention_norm(x + self.attention_out(attended))
        return self.output_norm(x + self.output(F.gelu(self.intermediate(x))))


_RENAMES = {
    "attention.self.query": "query",
    "attention.self.key": "key",
    "attention.self.value": "value",
    "attention.output.dense": "attention_out",
    "attention.output.LayerNorm": "attention_norm",
    "intermediate.dense": "intermediate",
    "output.dense": "output",
    "output.LayerNorm": "output_norm",
}


class NativeBert(nn.Module):
    """Token, position and segment embeddings, then the encoder layers; mean-pooled, optionally normalised."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        config = _read(folder / "config.json")
        hidden, eps = int(config["hidden_size"]), float(config.get("layer_norm_eps", 1e-12))
        # Plain tables: nn.Embedding would random-initialise them, which on "meta" imports torch's compiler.
        self.word_embeddings = _table(int(config["vocab_size"]), hidden)
        self.position_embeddings = _table(int(config["max_position_embeddings"]), hidden)
        self.token_type_embeddings = _table(int(config.get("type_vocab_size", 2)), hidden)
        self.embedding_norm = nn.LayerNorm(hidden, eps=eps, device="meta")
        self.layers = nn.ModuleList(
            _Layer(hidden, int(config["num_attention_heads"]), int(config["intermediate_size"]), eps)
            for _ in range(int(config["num_hidden_layers"]))
        )
        state = {}
        for name, tensor in load_file(folder / "model.safetensors").items():
            name = name.removeprefix("bert.")
            if name.startswith(("pooler.", "embeddings.position_ids")):
                continue
            if name.startswith("embeddings."):
                name = name.removeprefix("embeddings.").replace("LayerNorm", "embedding_norm")
                name = name.removesuffix("_embeddings.weight") + "_embeddings" if "_embeddings." in name else name
            elif name.startswith("encoder.layer."):
                _, _, index, rest = name.split(".", 3)
                module, _, param = rest.rpartition(".")
                name = f"layers.{index}.{_RENAMES.get(module, module)}.{param}"
            state[name] = tensor.float()
        self.load_state_dict(state, strict=True, assign=True)
        self.eval()
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
        self.normalize = any(m.get("type") == NORMALIZE for m in modules)
        max_length = int(_read(folder / "sentence_bert_config.json").get("max_seq_length", 512))
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=min(max_length, int(config["max_position_embeddings"])))
        pad_id = int(config.get("pad_token_id") or 0)
        self.tokenizer.enable_padding(pad_id=pad_id, pad_token=self.tokenizer.id_to_token(pad_id) or "[PAD]")
        self.dimension = hidden

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """(N, C) float32 sentence embeddings, in the order of `texts`."""
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        # Similar lengths batch together, so padding costs little.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for begin in range(0, len(order), batch_size):
            chunk = order[begin : begin + batch_size]
            with torch.inference_mode():
                out[chunk] = self(*self.tokenize([texts[i] for i in chunk])).numpy()
        return out

    def tokenize(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids (B, T) and the mask (B, T) of the tokens that are not padding."""
        encodings = self.tokenizer.encode_batch(list(texts))
        ids = torch.tensor([e.ids for e in encodings])
        keep = torch.tensor([e.attention_mask for e in encodings], dtype=torch.bool)
        return ids, keep

    def forward(self, ids: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """(B, C) sentence embeddings of tokenized texts; differentiable (encode runs it without gradients)."""
        positions = torch.arange(ids.shape[1]).unsqueeze(0)  # (1, T)
        x = (
            F.embedding(ids, self.word_embeddings)
            + F.embedding(positions, self.position_embeddings)
            + F.embedding(torch.zeros_like(ids), self.token_type_embeddings)
        )
        x = self.embedding_norm(x)
        mask = keep[:, None, None, :]  # (B, 1, 1, T): no token attends to padding
        for layer in self.layers:
            x = layer(x, mask)
        weights = keep.unsqueeze(-1).float()  # (B, T, 1)
        pooled = (x * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        return F.normalize(pooled, dim=-1) if self.normalize else pooled
