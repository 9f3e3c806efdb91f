"""Serve the registry's active adapter, and switch to a newly activated one without a restart.

`SwappableBackend` holds the backend that answers now. It compares the registry's `state_token()` (one small
file read) with the token it last acted on: at the start of every answer, and every `poll_seconds` from a
daemon thread. When the token changed it builds a second backend with the new adapter merged, off the
answering thread, and then replaces its reference in one assignment. An answer that has started keeps the
backend it started with (`serving()` hands the pipeline one backend for the whole answer), so answers in flight
finish on the old adapter and the old weights are freed when the last of them ends. A new adapter that fails to
load (damaged, made for another model, out of memory) leaves the old one serving, with one warning per change
of the registry, not one per answer.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, cast

from bot.errors import DomainbotError
from bot.model.backend import Backend, GenerationParams, GenerationResult, Message
from bot.model.loader import first_line

if TYPE_CHECKING:
    from training.registry import AdapterRegistry

log = logging.getLogger(__name__)

LoadAdapter = Callable[[str | None], Backend]


class SwappableBackend:
    """A Backend that follows the adapter registry: it delegates to the backend of the active adapter."""

    def __init__(
        self,
        backend: Backend,
        registry: AdapterRegistry,
        load: LoadAdapter,
        token: str,
        poll_seconds: float = 0.0,
    ) -> None:
        """`load(name)` builds a backend serving adapter `name` (None: the base model). `token` is the registry's
        state token read before `backend`'s adapter was chosen, so a change made since is caught by the first
        check. `poll_seconds` > 0 starts a daemon thread that checks that often."""
        self._backend = backend
        self.registry = registry
        self._load = load
        self._seen = token
        # `_lock` guards the reference swap and the loader thread slot; `_refresh_lock` lets one load run at a time.
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._loader: threading.Thread | None = None
        self._stop = threading.Event()
        self.switches = 0
        if poll_seconds > 0:
            poller = threading.Thread(
                target=_poll, args=(weakref.ref(self), poll_seconds, self._stop), name="adapter-poll", daemon=True
            )
            poller.start()

    # --- the Backend protocol, answered by the backend serving now ----------------------------------------

    @property
    def name(self) -> str:
        return self._backend.name

    @property
    def model_name(self) -> str:
        return self._backend.model_name

    @property
    def adapter(self) -> str | None:
        return self._backend.adapter

    def count_tokens(self, messages: Sequence[Message]) -> int:
        return self._backend.count_tokens(messages)

    def context_window(self) -> int:
        return self._backend.context_window()

    def stream(self, messages: Sequence[Message], params: GenerationParams, result: GenerationResult) -> Iterator[str]:
        # Bound once, when the stream starts: a switch during the answer does not reach it.
        yield from self.current().stream(messages, params, result)

    # --- following the registry ---------------------------------------------------------------------------

    def current(self) -> Backend:
        """The backend to answer with; first starts loading a newly activated adapter if there is one."""
        self.check()
        return self._backend

    def check(self) -> threading.Thread | None:
        """If the registry changed since the last look, load its active adapter in a background thread (returned,
        so a caller may wait for it). Costs one small file read when nothing changed."""
        token = self.registry.state_token()
        with self._lock:
            if token == self._seen or self._loader is not None or self._refresh_lock.locked():
                return None
            self._loader = threading.Thread(target=self._background_refresh, name="adapter-load", daemon=True)
            loader = self._loader
        loader.start()
        return loader

    def refresh(self) -> bool:
        """Look at the registry now and, if another adapter is active, load it in this thread and switch to it.
        Returns whether it switched. Failures are logged once per registry change and keep the old adapter."""
        with self._refresh_lock:
            token = self.registry.state_token()
            if token == self._seen:
                return False
            try:
                wanted = self.registry.active()
            except DomainbotError as exc:
                self._give_up(token, f"the registry cannot say which adapter is active: {exc}")
                return False
            if wanted == self.adapter:
                self._seen = token
                return False
            try:
                backend = self._load(wanted)
            # Whatever loading raises (a misfit adapter, a damaged file, MemoryError or CUDA out of memory) must
            # leave the adapter that works serving; the bot keeps answering.
            except Exception as exc:
                self._give_up(token, f"{_describe(wanted)} could not be loaded: {first_line(exc)}")
                return False
            with self._lock:
                previous, self._backend, self._seen = self._backend.adapter, backend, token
                self.switches += 1
            log.info("Switched from %s to %s.", _describe(previous), _describe(wanted))
            return True

    def close(self) -> None:
        """Stop the polling thread (it also stops by itself once this backend is garbage)."""
        self._stop.set()

    def _background_refresh(self) -> None:
        try:
            self.refresh()
        finally:
            with self._lock:
                self._loader = None

    def _give_up(self, token: str, reason: str) -> None:
        # Remember the token: the same registry state is not retried on every answer, the next change is.
        self._seen = token
        log.warning("Adapter switch skipped, still answering with %s: %s", _describe(self.adapter), reason)


def serving(backend: Backend) -> Backend:
    """The backend to use for one whole answer: a wrapper's current one (a swappable backend's, a fallback's),
    any other backend itself."""
    current = getattr(backend, "current", None)
    return cast("Backend", current()) if callable(current) else backend


def _poll(ref: weakref.ref[SwappableBackend], interval: float, stop: threading.Event) -> None:
    # A weak reference, so the thread does not keep a discarded backend (and its weights) alive.
    while not stop.wait(interval):
        backend = ref()
        if backend is None:
            return
        backend.refresh()
        del backend


def _describe(adapter: str | None) -> str:
    return f"adapter {adapter}" if adapter is not None else "the base model"
