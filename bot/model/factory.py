"""Pick and open the generation backend the settings ask for."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from bot.config import Settings
from bot.errors import DomainbotError
from bot.model.backend import Backend
from bot.model.loader import ResolvedModel, load_resolved


@dataclass
class OpenedBackend:
    backend: Backend
    path: str
    source: str
    device: str
    dtype: str
    timings: dict[str, float] = field(default_factory=dict)


def native_unsupported_reason(resolved: ResolvedModel, settings: Settings, device_type: str) -> str | None:
    from bot.model.llama import read_config, unsupported_reason
    from bot.model.native import adapter_unsupported_reason

    if device_type != "cpu":
        return f"it runs on the CPU only, and the device is {device_type}"
    reason = unsupported_reason(read_config(resolved.folder))
    if reason is None and settings.adapter is not None:
        reason = adapter_unsupported_reason(settings.adapter)
    return reason


def open_backend(settings: Settings) -> OpenedBackend:
    """'auto' takes the native backend for Llama models on the CPU and transformers for everything else."""
    from bot.model.device import select_device, select_dtype

    started = time.perf_counter()
    device = select_device(settings.device)
    dtype = select_dtype(settings.dtype, device)

    def load(resolved: ResolvedModel) -> OpenedBackend:
        where = (str(resolved.folder), resolved.source, str(device), _dtype_name(dtype))
        if settings.backend != "transformers":
            reason = native_unsupported_reason(resolved, settings, device.type)
            if reason is None:
                from bot.model.native import NativeLlamaBackend

                native = NativeLlamaBackend(
                    resolved.folder, resolved.name, device, dtype, settings.adapter, settings.prompt_format
                )
                return OpenedBackend(native, *where)
            if settings.backend == "native":
                raise DomainbotError(
                    f"The native backend cannot run {resolved.name}: {reason}. Set DOMAINBOT_BACKEND=auto."
                )
        from bot.model.backend import TransformersBackend
        from bot.model.loader import _load_folder, apply_adapter

        chat = settings.prompt_format == "chat"
        loaded = _load_folder(resolved.folder, resolved.name, device, dtype, require_chat_template=chat)
        if settings.adapter is not None:
            apply_adapter(loaded, settings.adapter)
        return OpenedBackend(TransformersBackend(loaded, settings.prompt_format), *where)

    opened = load_resolved(settings, load)
    opened.timings["load"] = time.perf_counter() - started
    return opened


def _dtype_name(dtype: object) -> str:
    return str(dtype).removeprefix("torch.")
