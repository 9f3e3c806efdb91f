"""Export: merge a LoRA adapter into its base model and write a complete, standalone model folder.

The folder loads like any Hugging Face model (`AutoModelForCausalLM.from_pretrained`) and in domainbot's
native backend: safetensors weights, config.json, generation_config.json, the base model's tokenizer files
and chat template (copied byte for byte), and a README.md card naming the base model and the adapter.

The merge itself is peft's (`PeftModel.from_pretrained(...).merge_and_unload()`), done in float32 and cast to
the output dtype afterwards. Before peft sees the adapter, every tensor in it is checked against the base
model (module present, shapes matching), because peft silently ignores adapter weights for modules the model
lacks. Base models with tied input and output embeddings (SmolLM2) stay tied unless the adapter changes one
of the two: then the output embedding gets its own copy first, so merging into it cannot alter the input
embedding through the shared tensor, and the folder is written untied.

The folder is written beside its destination under a hidden name and renamed into place at the end, so an
interrupted merge leaves no half-written model.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from bot.errors import DomainbotError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

log = logging.getLogger(__name__)

MergeDtype = Literal["auto", "float32", "bfloat16", "float16"]
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
CARD = "README.md"
# Shards of this size suit the Hub and every loader; a 135M model is one file.
MAX_SHARD_SIZE = "5GB"
# Tokenizer and chat-template files travel with the weights unchanged.
TOKENIZER_FILES = re.compile(
    r"^(tokenizer.*|special_tokens_map\.json|added_tokens\.json|vocab\..+|merges\.txt|spiece\.model|"
    r"chat_template\.(jinja|json)|additional_chat_templates)$"
)
# Parts of a peft state-dict key that follow the name of the module they adapt.
# (`base_layer` holds a whole embedding table, which peft saves with adapters that train one.)
PEFT_KEY_PARTS = (
    "lora_A",
    "lora_B",
    "lora_embedding_A",
    "lora_embedding_B",
    "lora_magnitude_vector",
    "token_adapter",
    "base_layer",
)


@dataclass(frozen=True)
class AdapterInfo:
    """What adapter_config.json says about an adapter."""

    folder: Path
    peft_type: str
    base_model: str | None
    rank: int | None
    alpha: float | None
    target_modules: list[str]

    @classmethod
    def read(cls, folder: Path) -> AdapterInfo:
        try:
            data: dict[str, Any] = json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DomainbotError(f"Adapter {folder}: {ADAPTER_CONFIG} cannot be read ({exc}).") from None
        targets = data.get("target_modules") or []
        return cls(
            folder=folder,
            peft_type=str(data.get("peft_type")),
            base_model=data.get("base_model_name_or_path") or None,
            rank=data.get("r"),
            alpha=data.get("lora_alpha"),
            target_modules=sorted(targets) if isinstance(targets, list) else [str(targets)],
        )


def merge_adapter(
    base_folder: Path,
    adapter: Path,
    out: Path,
    dtype: MergeDtype = "auto",
    *,
    base_name: str | None = None,
    base_hub_id: str | None = None,
    force: bool = False,
    allow_other_base: bool = False,
) -> Path:
    """Merge the LoRA adapter in `adapter` into the model in `base_folder`; write the result to `out`.

    dtype: the weights' dtype in `out`; 'auto' keeps the base checkpoint's. base_name: the base model's name
    (default: its folder name), checked against the name the adapter records. base_hub_id: the base model's
    Hugging Face id, for the card's metadata. force: replace `out` if it exists. allow_other_base: merge even
    when the adapter names another base model (the shapes must still fit).
    """
    base_folder, adapter, out = Path(base_folder), Path(adapter), Path(out).expanduser().resolve()
    base_name = base_name or base_folder.name
    _check_inputs(base_folder, adapter, out, force)
    info = AdapterInfo.read(adapter)
    if info.peft_type != "LORA":
        raise DomainbotError(f"Adapter {adapter} is a {info.peft_type} adapter; merge expects a LoRA adapter.")
    if not allow_other_base:
        _check_base_name(info, base_folder, base_name)
    target_dtype = _output_dtype(dtype, base_folder)

    model = _load_base(base_folder)
    tensors = _adapter_tensors(adapter)
    _check_adapter_fits(model, tensors, adapter, base_name, info)
    if getattr(model.config, "tie_word_embeddings", False) and _touches_embeddings(model, tensors):
        _untie_output_embeddings(model)
    merged = _merge(model, adapter, base_name, info)
    tied = bool(getattr(merged.config, "tie_word_embeddings", False))
    merged = merged.to(target_dtype)  # type: ignore[arg-type]  # transformers' stubs type `.to` for devices only

    with _staging(out, force) as staging:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        merged.save_pretrained(staging, max_shard_size=MAX_SHARD_SIZE)
        for source in sorted(base_folder.iterdir()):
            if TOKENIZER_FILES.match(source.name):
                _copy(source, staging / source.name)
        if (base_folder / "generation_config.json").is_file():
            shutil.copyfile(base_folder / "generation_config.json", staging / "generation_config.json")
        card = model_card(out.name, base_name, base_hub_id, info, str(target_dtype).removeprefix("torch."), tied)
        (staging / CARD).write_text(card, encoding="utf-8")
    log.info("Merged %s into %s: %s", adapter, base_name, out)
    return out


def model_card(
    title: str, base_name: str, base_hub_id: str | None, info: AdapterInfo, dtype: str, tied: bool
) -> str:
    """README.md for the merged folder: Hub metadata, then what it was made from, without local paths."""
    metadata = ["library_name: transformers"]
    if base_hub_id:
        metadata.append(f"base_model: {base_hub_id}")
    metadata.append("tags:\n- domainbot\n- lora\n- merged")
    lora = f"LoRA rank {info.rank}, alpha {info.alpha}" if info.rank else "LoRA"
    targets = f"; adapts {', '.join(info.target_modules)}" if info.target_modules else ""
    lines = [
        "---",
        *metadata,
        "---",
        f"# {title}",
        "",
        f"{base_name} with the LoRA adapter `{info.folder.name}` merged into its weights by domainbot.",
        "",
        f"- base model: {base_hub_id or base_name}",
        f"- adapter: {info.folder.name} ({lora}{targets})",
        f"- adapter trained on: {os.path.basename(info.base_model) if info.base_model else 'not recorded'}",
        f"- weights: {dtype}, safetensors; input and output embeddings {'tied' if tied else 'untied'}",
        "",
    ]
    return "\n".join(lines)


def _check_inputs(base_folder: Path, adapter: Path, out: Path, force: bool) -> None:
    if not (base_folder / "config.json").is_file():
        raise DomainbotError(
            f"Base model folder {base_folder} has no config.json: expected a Hugging Face model folder "
            "(config.json, safetensors weights, tokenizer)."
        )
    if not any(base_folder.glob("*.safetensors")):
        raise DomainbotError(f"Base model folder {base_folder} has no .safetensors weights; merge reads safetensors.")
    if not adapter.is_dir():
        raise DomainbotError(f"Adapter folder {adapter} does not exist. Expected a peft LoRA adapter folder.")
    missing = [name for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS) if not (adapter / name).is_file()]
    if missing:
        raise DomainbotError(
            f"Adapter {adapter} is not a peft adapter folder: {', '.join(missing)} missing. Expected "
            f"{ADAPTER_CONFIG} and {ADAPTER_WEIGHTS} (what peft's save_pretrained writes)."
        )
    target = out.resolve()
    for name, source in (("base model", base_folder), ("adapter", adapter)):
        source = source.resolve()
        if target == source or target in source.parents or source in target.parents:
            raise DomainbotError(
                f"Output folder {out} overlaps the {name} folder {source}; choose a separate --out folder."
            )
    if out.exists() and not force:
        raise DomainbotError(
            f"Output folder {out} already exists. Choose another --out, or pass --force to replace it."
        )
    if out.exists() and not out.is_dir():
        raise DomainbotError(f"Output path {out} is a file, not a folder; choose another --out.")
    # --force replaces an earlier merge, never a folder of something else (`--out . --force` in the wrong place).
    if out.exists() and any(out.iterdir()) and not _is_model_folder(out):
        raise DomainbotError(
            f"Output folder {out} exists and does not hold a model, so --force will not replace it. "
            "Choose another --out."
        )


def _is_model_folder(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def _check_base_name(info: AdapterInfo, base_folder: Path, base_name: str) -> None:
    if info.base_model is None:
        return
    recorded = os.path.basename(info.base_model.rstrip("/"))
    names = {base_folder.name, os.path.basename(base_name.rstrip("/"))}
    if recorded not in names:
        raise DomainbotError(
            f"Adapter {info.folder.name} was trained on {recorded}, but the base model is {base_name}. "
            "Merge it into the model it was trained on (DOMAINBOT_MODEL), or pass --allow-other-base if "
            f"{base_name} is that model under another name."
        )


def _output_dtype(dtype: MergeDtype, base_folder: Path) -> torch.dtype:
    import torch

    if dtype == "auto":
        config = json.loads((base_folder / "config.json").read_text(encoding="utf-8"))
        dtype = config.get("dtype") or config.get("torch_dtype") or "float32"
    resolved = getattr(torch, str(dtype), None)
    if not isinstance(resolved, torch.dtype) or not resolved.is_floating_point:
        raise DomainbotError(f"Unsupported dtype {dtype!r}: expected float32, bfloat16 or float16.")
    return resolved


def _load_base(base_folder: Path) -> PreTrainedModel:
    """The base model in float32 on the CPU, so the LoRA update is added at full precision."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        model = AutoModelForCausalLM.from_pretrained(base_folder, dtype=torch.float32)
    except Exception as exc:  # torch, safetensors and json each raise their own types for a bad folder
        raise DomainbotError(
            f"Could not load the base model in {base_folder}: {_first_line(exc)}. Expected a causal language "
            "model folder."
        ) from exc
    return model.eval()


def _adapter_tensors(adapter: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(adapter / ADAPTER_WEIGHTS)
    except Exception as exc:  # safetensors raises its own error type for a damaged file
        raise DomainbotError(f"Adapter {adapter}: {ADAPTER_WEIGHTS} cannot be read ({_first_line(exc)}).") from None


def adapted_module(key: str) -> str:
    """The model module a peft state-dict key belongs to: `base_model.model.X.lora_A.weight` -> `X`."""
    parts = key.removeprefix("base_model.model.").split(".")
    for index, part in enumerate(parts):
        if part in PEFT_KEY_PARTS:
            return ".".join(parts[:index])
    return ".".join(parts[:-1])  # a whole module saved by `modules_to_save`: X.weight


def _check_adapter_fits(
    model: PreTrainedModel, tensors: dict[str, torch.Tensor], adapter: Path, base_name: str, info: AdapterInfo
) -> None:
    """Every adapter tensor names a module of the model, with a shape that fits it."""
    if not tensors:
        raise DomainbotError(f"Adapter {adapter} holds no weights.")
    trained_on = f" (it was trained on {os.path.basename(info.base_model)})" if info.base_model else ""
    for key, tensor in sorted(tensors.items()):
        name = adapted_module(key)
        try:
            module = model.get_submodule(name)
        except AttributeError:
            raise DomainbotError(
                f"Adapter {adapter} does not fit {base_name}{trained_on}: it adapts {name}, which {base_name} "
                "does not have."
            ) from None
        problem = _shape_problem(key, tuple(tensor.shape), module)
        if problem:
            raise DomainbotError(f"Adapter {adapter} does not fit {base_name}{trained_on}: {name} {problem}.")


def _shape_problem(key: str, shape: tuple[int, ...], module: Any) -> str | None:
    weight = getattr(module, "weight", None)
    if weight is None or weight.dim() != 2 or len(shape) != 2:
        return None  # not a plain linear or embedding table; peft checks the rest
    rows, cols = tuple(weight.shape)  # linear: (out, in); embedding: (vocab, dim)
    part = key.removeprefix("base_model.model.").split(".")
    if "lora_A" in part and shape[1] != cols:
        return f"takes {cols} inputs, the adapter's lora_A expects {shape[1]}"
    if "lora_B" in part and shape[0] != rows:
        return f"has {rows} outputs, the adapter's lora_B gives {shape[0]}"
    if "lora_embedding_A" in part and shape[1] != rows:
        return f"has {rows} rows, the adapter's lora_embedding_A expects {shape[1]}"
    if "lora_embedding_B" in part and shape[0] != cols:
        return f"has width {cols}, the adapter's lora_embedding_B gives {shape[0]}"
    whole = "base_layer" in part or not any(p in part for p in PEFT_KEY_PARTS)
    if whole and shape != (rows, cols):
        return f"is {(rows, cols)}, the adapter's replacement weight is {shape}"
    return None


def _embedding_modules(model: PreTrainedModel) -> set[str]:
    wanted = {id(model.get_input_embeddings()), id(model.get_output_embeddings())}
    return {name for name, module in model.named_modules() if id(module) in wanted}


def _touches_embeddings(model: PreTrainedModel, tensors: dict[str, torch.Tensor]) -> bool:
    embeddings = _embedding_modules(model)
    return any(adapted_module(key) in embeddings for key in tensors)


def _untie_output_embeddings(model: PreTrainedModel) -> None:
    """Give the output embedding its own copy of the shared table, so each can change alone."""
    import torch

    output: Any = model.get_output_embeddings()
    shared: Any = model.get_input_embeddings()
    output.weight = torch.nn.Parameter(shared.weight.detach().clone())
    model.config.tie_word_embeddings = False
    # Multimodal configs keep the flag on their text sub-config; for Llama that is the config itself.
    text_config = getattr(model.config, "get_text_config", lambda: None)()
    if text_config is not None:
        text_config.tie_word_embeddings = False


def _merge(model: PreTrainedModel, adapter: Path, base_name: str, info: AdapterInfo) -> PreTrainedModel:
    from peft import PeftModel

    try:
        peft_model = PeftModel.from_pretrained(model, adapter, is_trainable=False)
        merged: PreTrainedModel = peft_model.merge_and_unload()
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        trained_on = os.path.basename(info.base_model) if info.base_model else "another model"
        raise DomainbotError(
            f"Adapter {adapter} does not fit {base_name} (it was trained on {trained_on}): {_first_line(exc)}"
        ) from exc
    return merged.eval()


@contextmanager
def _staging(out: Path, force: bool) -> Iterator[Path]:
    """A hidden folder beside `out` to write into; renamed to `out` only when the block finishes."""
    out.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:8]
    staging = out.with_name(f".{out.name}.partial-{token}")
    staging.mkdir()
    try:
        yield staging
        if out.exists():
            if not force:
                raise DomainbotError(f"Output folder {out} appeared while merging; pass --force to replace it.")
            retired = out.with_name(f".{out.name}.old-{token}")
            out.rename(retired)
            staging.rename(out)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _copy(source: Path, target: Path) -> None:
    if source.is_dir():
        shutil.copytree(source, target)
    elif source.is_file():
        shutil.copyfile(source, target)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
