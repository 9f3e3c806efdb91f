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

from bot.config import EMBEDDED_MODEL, Settings
from bot.errors import DomainbotError
from bot.model.backend import Backend
from bot.model.loader import ResolvedModel, configured_model_name, first_line, load_resolved, pinned_adapter

if TYPE_CHECKING:
    import torch

    from bot.model.openai_backend import TokenCounter
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
    if settings.backend == "openai":
        opened = _open_openai(settings, follow_registry)
        opened.timings["load"] = time.perf_counter() - started
        return opened
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


def _open_openai(settings: Settings, follow_registry: bool) -> OpenedBackend:
    """Generation on the server at DOMAINBOT_OPENAI_URL; with DOMAINBOT_OPENAI_FALLBACK=local, the local backend
    answers while that server is down.

    The server serves its own models, so an adapter reaches it only as a model name: with
    DOMAINBOT_OPENAI_ADAPTER_AS_MODEL, the pinned adapter's name, or (front ends) the registry's active
    adapter's, is sent as `model`, and an activation switches the name without a restart.
    """
    from bot.model.fallback import FallbackBackend
    from bot.model.openai_backend import OpenAIBackend, OpenAIServerError, display_url

    url = settings.openai_url
    if not url:
        raise DomainbotError(
            "DOMAINBOT_BACKEND=openai needs DOMAINBOT_OPENAI_URL: the base URL of an OpenAI-compatible server "
            "(vLLM, llama.cpp's server, TGI), e.g. http://gpu-box:8000/v1."
        )
    if settings.adapter is not None and not settings.openai_adapter_as_model:
        raise DomainbotError(
            f"DOMAINBOT_ADAPTER is {settings.adapter}, but the openai backend cannot merge an adapter into a model "
            "on another server. Serve it there under its name (vLLM: --lora-modules NAME=PATH) and set "
            "DOMAINBOT_OPENAI_ADAPTER_AS_MODEL=true, or unset DOMAINBOT_ADAPTER."
        )
    counter = _token_counter(settings)
    counter.warm()
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None

    def build(adapter: str | None) -> OpenAIBackend:
        return OpenAIBackend(
            url,
            adapter if adapter is not None else settings.openai_model,
            api_key=key,
            context=settings.openai_context,
            timeout=settings.openai_timeout,
            connect_timeout=settings.openai_connect_timeout,
            prompt_format=settings.prompt_format,
            counter=counter,
            adapter=adapter,
        )

    def connected(adapter: str | None) -> OpenAIBackend:
        backend = build(adapter)
        backend.connect()
        return backend

    registry = None
    if settings.adapter is not None:
        first = build(settings.adapter.name)
    elif follow_registry and settings.openai_adapter_as_model:
        from training.registry import AdapterRegistry

        registry = AdapterRegistry.in_data_dir(settings.data_dir)
        token = registry.state_token()
        first = build(registry.active())
    else:
        first = build(None)
    try:
        first.connect()
        failure: OpenAIServerError | None = None
    except OpenAIServerError as exc:
        if settings.openai_fallback == "none":
            raise
        failure = exc
    backend: Backend = first
    if registry is not None:
        from bot.model.swap import SwappableBackend

        backend = SwappableBackend(first, registry, connected, token, settings.adapter_poll_seconds)
    if settings.openai_fallback == "local":
        local = settings.model_copy(update={"backend": "auto"})
        wrapper = FallbackBackend(
            backend, first.ping, lambda: open_backend(local, follow_registry).backend, settings.openai_retry_seconds
        )
        if failure is not None:
            wrapper.went_down(failure)
            wrapper.fallback()
        backend = wrapper
    return OpenedBackend(backend, display_url(url), "server", "remote", "server")


def _token_counter(settings: Settings) -> TokenCounter:
    """Counts with DOMAINBOT_MODEL's tokenizer, loaded alone on first use and never converting the embedded
    model: its converted cache when there is one, else the tokenizer inside its GGUF file."""
    from bot.model import embedded
    from bot.model.loader import resolve_model_folder
    from bot.model.openai_backend import TokenCounter

    try:
        if settings.model != EMBEDDED_MODEL:
            return TokenCounter(resolve_model_folder(settings.model))
        source = embedded.find_embedded_gguf()
        cache = settings.models_dir / embedded.NAME
        if embedded.cache_problem(cache, source) is None:
            return TokenCounter(cache)
        return TokenCounter(source.gguf.parent, source.gguf.name)
    except DomainbotError as exc:
        log.info("Estimating prompt lengths for the openai backend: %s", exc)
        return TokenCounter()


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


def cpu_only_torch() -> bool:
    """Whether the installed torch is a build without CUDA or ROCm (off macOS, where MPS may be there), read
    from its version file without importing it. A GPU build must be imported to learn whether a GPU is there."""
    spec = importlib.util.find_spec("torch")
    if spec is None or spec.origin is None or platform.system() == "Darwin":
        return False
    try:
        version = (Path(spec.origin).parent / "version.py").read_text(encoding="utf-8")
    except OSError:
        return False
    return all(re.search(rf"^{name}\b.*=\s*None\s*$", version, re.MULTILINE) for name in ("cuda", "hip"))


def runs_on_cpu(preference: str) -> bool:
    """Whether the model runs on the CPU. A torch build without CUDA or ROCm (off macOS, where MPS may be there)
    answers 'auto' without importing torch, which costs 1.5 s of a start that llama.cpp makes in 0.3 s."""
    if preference != "auto":
        return preference == "cpu"
    if cpu_only_torch():
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
