"""Load a Hugging Face causal LM (a local folder, a cached hub id, or the embedded model), with a LoRA adapter."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from bot.config import EMBEDDED_MODEL, Settings
from bot.errors import AdapterError, DomainbotError
from bot.model import embedded

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class LoadedModel:
    """A model ready to generate, and where it came from."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    name: str
    path: Path
    device: torch.device
    dtype: torch.dtype
    adapter: str | None = None
    # 'cache' (embedded, warm), 'converted' (embedded, built now), or 'folder'.
    source: str = "folder"
    timings: dict[str, float] = field(default_factory=dict)


def resolve_model_folder(reference: str) -> Path:
    """A local folder, or the snapshot folder of a hub id that is already in the local cache."""
    path = Path(reference).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise DomainbotError(
                f"Model folder {path} has no config.json: expected a Hugging Face model folder "
                "(config.json, weights, tokenizer). Point DOMAINBOT_MODEL at such a folder."
            )
        return path
    looks_like_hub_id = reference.count("/") == 1 and not reference.startswith((".", "/", "~"))
    if not looks_like_hub_id or path.exists():
        raise DomainbotError(
            f"Model {reference!r} not found: expected 'embedded', a local model folder, or a Hugging Face id "
            "already in the local cache. Check DOMAINBOT_MODEL."
        )
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(reference, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        raise DomainbotError(
            f"Model {reference!r} is not in the local Hugging Face cache and domainbot never downloads at run "
            f"time. Download it first (`hf download {reference}`) or set DOMAINBOT_MODEL to a local folder."
        ) from None


@dataclass(frozen=True)
class ResolvedModel:
    """The folder a model reference names. source: 'cache' or 'converted' (the embedded model), or 'folder'."""

    folder: Path
    name: str
    source: str


def resolve_model(settings: Settings) -> ResolvedModel:
    if settings.model == EMBEDDED_MODEL:
        folder, converted = embedded.ensure_embedded_model(settings.models_dir)
        return ResolvedModel(folder, embedded.NAME, "converted" if converted else "cache")
    folder = resolve_model_folder(settings.model)
    return ResolvedModel(folder, _display_name(folder, settings.model), "folder")


def load_resolved(settings: Settings, load: Callable[[ResolvedModel], T]) -> T:
    """Run `load` on the configured model; an embedded cache whose bytes turn out bad is rebuilt once."""
    resolved = resolve_model(settings)
    try:
        return load(resolved)
    except DomainbotError as exc:
        # An adapter that does not fit says nothing about the cache: rebuilding it would cost half a minute.
        if resolved.source != "cache" or isinstance(exc, AdapterError):
            raise
        folder, _ = embedded.ensure_embedded_model(settings.models_dir, rebuild_reason=str(exc))
        return load(ResolvedModel(folder, resolved.name, "converted"))


def load_model(settings: Settings) -> LoadedModel:
    """Load the configured model and adapter with transformers, on the configured device."""
    from bot.model.device import select_device, select_dtype

    device = select_device(settings.device)
    dtype = select_dtype(settings.dtype, device)
    started = time.perf_counter()

    def load(resolved: ResolvedModel) -> LoadedModel:
        loaded = _load_folder(resolved.folder, resolved.name, device, dtype, settings.prompt_format == "chat")
        loaded.source = resolved.source
        return loaded

    adapter = pinned_adapter(settings)
    loaded = load_resolved(settings, load)
    if adapter is not None:
        apply_adapter(loaded, adapter)
    loaded.timings["load"] = time.perf_counter() - started
    return loaded


def configured_model_name(settings: Settings) -> str:
    """The configured model's name, as `resolve_model` gives it, without loading or converting anything."""
    if settings.model == EMBEDDED_MODEL:
        return embedded.NAME
    if settings.model.endswith(".gguf"):  # a GGUF model file, served by llama.cpp
        return Path(settings.model).stem
    return _display_name(resolve_model_folder(settings.model), settings.model)


def pinned_adapter(settings: Settings) -> Path | None:
    """The folder DOMAINBOT_ADAPTER names: a path, or the name of an adapter in the registry.

    A registry adapter must have been trained on the configured model. Anything else is passed on as a path, for
    the loaders to say what is missing there.
    """
    if settings.adapter is None:
        return None
    adapter = settings.adapter.expanduser()
    if adapter.is_dir() or len(adapter.parts) != 1:
        return adapter
    from training.registry import AdapterRegistry

    registry = AdapterRegistry.in_data_dir(settings.data_dir)
    if not (registry.root / adapter.name).is_dir():
        return adapter
    registry.check_fits(adapter.name, configured_model_name(settings))
    return registry.path(adapter.name)


def _display_name(folder: Path, reference: str) -> str:
    return reference if not Path(reference).expanduser().exists() else folder.name


def _load_folder(
    folder: Path, name: str, device: torch.device, dtype: torch.dtype, require_chat_template: bool = True
) -> LoadedModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
    except Exception as exc:  # torch, safetensors and tokenizers each raise their own types for a bad folder
        raise cannot_load(folder, exc) from exc
    if require_chat_template and not tokenizer.chat_template:
        raise no_chat_template(name)
    model = model.to(device)  # type: ignore[arg-type]  # transformers' stubs type `.to` for dtypes only
    model.eval()
    return LoadedModel(model=model, tokenizer=tokenizer, name=name, path=folder, device=device, dtype=dtype)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def cannot_load(folder: Path, exc: BaseException) -> DomainbotError:
    return DomainbotError(
        f"Could not load the model in {folder}: {first_line(exc)}. Expected a causal language model folder with "
        "weights and a tokenizer."
    )


def no_chat_template(name: str) -> DomainbotError:
    return DomainbotError(
        f"Model {name} has no chat template, and domainbot talks to models through one. Use an instruct/chat "
        "model, or add a `chat_template` to its tokenizer_config.json."
    )


def apply_adapter(loaded: LoadedModel, adapter: Path) -> None:
    """Apply a peft LoRA adapter and merge it into the weights, so generation costs what the base model costs."""
    from peft import PeftModel

    config_file = adapter / "adapter_config.json"
    if not config_file.is_file():
        raise AdapterError(
            f"Adapter {adapter} is not a peft adapter folder: expected adapter_config.json in it. "
            "Check DOMAINBOT_ADAPTER: a peft adapter folder, or the name of an adapter in `domainbot adapters list`."
        )
    try:
        peft_model = PeftModel.from_pretrained(loaded.model, adapter, is_trainable=False)
    except (RuntimeError, ValueError, KeyError, OSError) as exc:
        base = _adapter_base(config_file)
        raise AdapterError(
            f"Adapter {adapter} does not fit model {loaded.name} (it was trained on {base or 'another model'}): "
            f"{first_line(exc)}"
        ) from exc
    loaded.model = peft_model.merge_and_unload()
    loaded.model.eval()
    loaded.adapter = adapter.name


def _adapter_base(config_file: Path) -> str | None:
    try:
        data: dict[str, Any] = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    base = data.get("base_model_name_or_path")
    return os.path.basename(str(base)) if base else None
