"""Pick and open the generation backend the settings ask for, with the adapter they (or the registry) name."""

from __future__ import annotations

import importlib.util
import logging
import platform
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bot.config import Settings
from bot.errors import DomainbotError
from bot.model.backend import Backend
from bot.model.loader import ResolvedModel, configured_model_name, first_line, load_resolved, pinned_adapter

if TYPE_CHECKING:
    import torch

    from training.registry import AdapterRegistry

log = logging.getLogger(__name__)


@dataclass
class OpenedBackend:
    backend: Backend
    path: str
    source: str
    device: str
    dtype: str
    timings: dict[str, float] = field(default_factory=dict)


def native_unsupported_reason(resolved: ResolvedModel, adapter: Path | None, device_type: str) -> str | None:
    from bot.model.llama import read_config, unsupported_reason
    from bot.model.native import adapter_unsupported_reason

    if device_type != "cpu":
        return f"it runs on the CPU only, and the device is {device_type}"
    reason = unsupported_reason(read_config(resolved.folder))
    if reason is None and adapter is not None:
        reason = adapter_unsupported_reason(adapter)
    return reason


def open_backend(settings: Settings, follow_registry: bool = False) -> OpenedBackend:
    """'auto' takes llama.cpp on the CPU when it is installed and the model has a GGUF file, else the native
    backend for Llama models on the CPU and transformers for everything else.

    The adapter: DOMAINBOT_ADAPTER when set (a folder or a registry name, pinned). Otherwise, with
    `follow_registry` (the front ends), the registry's active adapter, switched without a restart when another
    is activated; without it (evaluations, benchmarks), the base model.
    """
    started = time.perf_counter()
    llamacpp = _open_llamacpp(settings, follow_registry)
    if llamacpp is not None:
        llamacpp.timings["load"] = time.perf_counter() - started
        return llamacpp

    from bot.model.device import select_device, select_dtype

    device = select_device(settings.device)
    dtype = select_dtype(settings.dtype, device)

    def build(resolved: ResolvedModel, adapter: Path | None) -> OpenedBackend:
        backend = _build_backend(settings, resolved, adapter, device, dtype)
        return OpenedBackend(backend, str(resolved.folder), resolved.source, str(device), _dtype_name(dtype))

    if settings.adapter is not None or not follow_registry:
        adapter = pinned_adapter(settings)
        opened = load_resolved(settings, lambda resolved: build(resolved, adapter))
    else:
        opened = _open_following_registry(settings, build)
    opened.timings["load"] = time.perf_counter() - started
    return opened


def pin_active_adapter(settings: Settings) -> Settings:
    """The settings with the registry's active adapter pinned, unless one is set already: for evaluations, whose
    results must come from one adapter even if another is activated while they run."""
    if settings.adapter is not None:
        return settings
    from training.registry import AdapterRegistry

    active = AdapterRegistry.in_data_dir(settings.data_dir).active()
    return settings if active is None else settings.model_copy(update={"adapter": Path(active)})


def _build_backend(
    settings: Settings, resolved: ResolvedModel, adapter: Path | None, device: torch.device, dtype: torch.dtype
) -> Backend:
    if settings.backend != "transformers":
        reason = native_unsupported_reason(resolved, adapter, device.type)
        if reason is None:
            from bot.model.native import NativeLlamaBackend

            return NativeLlamaBackend(resolved.folder, resolved.name, device, dtype, adapter, settings.prompt_format)
        if settings.backend == "native":
            raise DomainbotError(
                f"The native backend cannot run {resolved.name}: {reason}. Set DOMAINBOT_BACKEND=auto."
            )
    from bot.model.backend import TransformersBackend
    from bot.model.loader import _load_folder, apply_adapter

    chat = settings.prompt_format == "chat"
    loaded = _load_folder(resolved.folder, resolved.name, device, dtype, require_chat_template=chat)
    if adapter is not None:
        apply_adapter(loaded, adapter)
    backend = TransformersBackend(loaded, settings.prompt_format)
    if settings.max_batch > 1:
        from bot.model.batching import BatchingBackend, supports_batching

        # Models whose cache is not a plain growing one (sliding windows, recurrent layers) answer one at a time.
        if supports_batching(loaded.model):
            return BatchingBackend(backend, settings.max_batch)
    return backend


def _open_following_registry(
    settings: Settings, build: Callable[[ResolvedModel, Path | None], OpenedBackend]
) -> OpenedBackend:
    from bot.model.swap import SwappableBackend
    from training.registry import AdapterRegistry

    registry = AdapterRegistry.in_data_dir(settings.data_dir)
    # Read before the pointer, so an activation that lands while the model loads is picked up by the first check.
    token = registry.state_token()
    active = registry.active()
    model_name = configured_model_name(settings)
    folder = None if active is None else _registry_adapter(registry, active, model_name)
    loaded_from: list[ResolvedModel] = []

    def load(resolved: ResolvedModel) -> OpenedBackend:
        loaded_from.append(resolved)
        return build(resolved, folder)

    opened = load_resolved(settings, load)
    resolved = loaded_from[-1]  # the model folder that loaded (the embedded cache may have been rebuilt)

    def load_adapter(name: str | None) -> Backend:
        adapter = None if name is None else _registry_adapter(registry, name, model_name)
        return build(resolved, adapter).backend

    opened.backend = SwappableBackend(opened.backend, registry, load_adapter, token, settings.adapter_poll_seconds)
    return opened


def _registry_adapter(registry: AdapterRegistry, name: str, model_name: str) -> Path:
    registry.check_fits(name, model_name)
    return registry.path(name)


def _dtype_name(dtype: object) -> str:
    return str(dtype).removeprefix("torch.")


# --- llama.cpp -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GgufModel:
    path: Path
    name: str


def gguf_model(settings: Settings) -> GgufModel | None:
    """The GGUF file of the configured model: the embedded model's, a .gguf file, or the one .gguf model file in a
    model folder; None when there is none."""
    from bot.config import EMBEDDED_MODEL
    from bot.model import embedded

    if settings.model == EMBEDDED_MODEL:
        return GgufModel(embedded.find_embedded_gguf().gguf, embedded.NAME)
    path = Path(settings.model).expanduser()
    if path.suffix == ".gguf":
        return GgufModel(path, path.stem)
    if path.is_dir():
        from training.gguf_lora import GGUF_ADAPTER_FILE

        files = [file for file in path.glob("*.gguf") if file.name != GGUF_ADAPTER_FILE]
        if len(files) == 1:
            return GgufModel(files[0], path.name)
    return None


def runs_on_cpu(preference: str) -> bool:
    """Whether the model runs on the CPU. A torch build without CUDA or ROCm (off macOS, where MPS may be there)
    answers 'auto' without importing torch, which costs 1.5 s of a start that llama.cpp makes in 0.3 s."""
    if preference != "auto":
        return preference == "cpu"
    spec = importlib.util.find_spec("torch")
    if spec is not None and spec.origin is not None and platform.system() != "Darwin":
        try:
            version = (Path(spec.origin).parent / "version.py").read_text(encoding="utf-8")
        except OSError:
            version = ""
        if all(re.search(rf"^{name}\b.*=\s*None\s*$", version, re.MULTILINE) for name in ("cuda", "hip")):
            return True
    from bot.model.device import select_device

    return select_device("auto").type == "cpu"


def _open_llamacpp(settings: Settings, follow_registry: bool) -> OpenedBackend | None:
    """The llama.cpp backend when the settings choose it; None when 'auto' settles on another backend. Under
    'auto' a GGUF or adapter llama.cpp cannot load leaves the choice to the other backends, with one warning."""
    from bot.model.llamacpp import llamacpp_installed, require_llamacpp

    if settings.backend == "llamacpp":
        require_llamacpp()
        model = gguf_model(settings)
        if model is None:
            raise DomainbotError(
                f"The llamacpp backend needs a GGUF model file, and DOMAINBOT_MODEL ({settings.model}) has none. "
                "Set DOMAINBOT_MODEL to 'embedded' or a .gguf file, or DOMAINBOT_BACKEND=auto."
            )
        return _llamacpp_backend(settings, model, follow_registry)
    if settings.backend != "auto" or not llamacpp_installed() or not runs_on_cpu(settings.device):
        return None
    from training.registry import RegistryError

    try:
        model = gguf_model(settings)
        return None if model is None else _llamacpp_backend(settings, model, follow_registry)
    except RegistryError:
        raise  # an adapter of another model: no other backend serves it either
    except DomainbotError as exc:
        log.warning("llama.cpp cannot serve the model (%s); using the next backend.", first_line(exc))
        return None


def _llamacpp_backend(settings: Settings, model: GgufModel, follow_registry: bool) -> OpenedBackend:
    from bot.model.llamacpp import LlamaCppBackend, LlamaCppEngine

    def build(adapter: Path | None) -> Backend:
        return LlamaCppBackend.open(model.path, model.name, adapter, settings.prompt_format)

    if settings.adapter is not None or not follow_registry:
        backend = build(pinned_adapter(settings))
    else:
        backend = _follow_registry(settings, model.name, build)
    engine = LlamaCppEngine.shared(model.path)  # the backend's own: it keeps the engine alive
    return OpenedBackend(backend, str(model.path), "gguf", "cpu", engine.quantization)


def _follow_registry(settings: Settings, model_name: str, build: Callable[[Path | None], Backend]) -> Backend:
    """A backend serving the registry's active adapter and following activations, built by `build(adapter)`."""
    from bot.model.swap import SwappableBackend
    from training.registry import AdapterRegistry

    registry = AdapterRegistry.in_data_dir(settings.data_dir)
    token = registry.state_token()  # before the pointer: an activation while loading is caught by the first check
    active = registry.active()
    backend = build(None if active is None else _registry_adapter(registry, active, model_name))

    def load_adapter(name: str | None) -> Backend:
        return build(None if name is None else _registry_adapter(registry, name, model_name))

    return SwappableBackend(backend, registry, load_adapter, token, settings.adapter_poll_seconds)
