"""Pick and open the generation backend the settings ask for, with the adapter they (or the registry) name."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bot.config import Settings
from bot.errors import DomainbotError
from bot.model.backend import Backend
from bot.model.loader import ResolvedModel, configured_model_name, load_resolved, pinned_adapter

if TYPE_CHECKING:
    import torch

    from training.registry import AdapterRegistry


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
    """'auto' takes the native backend for Llama models on the CPU and transformers for everything else.

    The adapter: DOMAINBOT_ADAPTER when set (a folder or a registry name, pinned). Otherwise, with
    `follow_registry` (the front ends), the registry's active adapter, switched without a restart when another
    is activated; without it (evaluations, benchmarks), the base model.
    """
    from bot.model.device import select_device, select_dtype

    started = time.perf_counter()
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
