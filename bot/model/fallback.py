"""Answer with a local backend while the generation server is down, and go back to the server once it is up.

`FallbackBackend` wraps the server's backend. Before each answer it asks the server for its model list (one
small request); when that fails, or the answer itself fails before its first piece, the answer comes from the
fallback backend (built on first need: loading a local model takes seconds) and the server is left alone for
`retry_seconds`. One warning marks the start of an outage and one the end, however many answers fall in
between. An answer that fails at its start after a successful check is logged under the server's model name
though the fallback wrote it: the pipeline reads the model name before generation starts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence

from bot.errors import DomainbotError
from bot.model.backend import Backend, GenerationParams, GenerationResult, Message
from bot.model.openai_backend import OpenAIServerError
from bot.model.swap import serving

log = logging.getLogger(__name__)


class FallbackBackend:
    """A Backend that answers with `primary` and, during an outage of its server, with a fallback backend."""

    def __init__(
        self,
        primary: Backend,
        ping: Callable[[], None],
        make_fallback: Callable[[], Backend],
        retry_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`ping()` raises OpenAIServerError when the server is down; `make_fallback()` builds the local backend."""
        self.primary = primary
        self._ping = ping
        self._make_fallback = make_fallback
        self.retry_seconds = retry_seconds
        self.clock = clock
        self._down_until: float | None = None
        self._fallback: Backend | None = None
        self._lock = threading.Lock()
        self.outages = 0

    # --- the Backend protocol, answered by the backend serving now ----------------------------------------

    @property
    def name(self) -> str:
        return self._active().name

    @property
    def model_name(self) -> str:
        return self._active().model_name

    @property
    def adapter(self) -> str | None:
        return self._active().adapter

    def count_tokens(self, messages: Sequence[Message]) -> int:
        return self._active().count_tokens(messages)

    def context_window(self) -> int:
        return self._active().context_window()

    def stream(self, messages: Sequence[Message], params: GenerationParams, result: GenerationResult) -> Iterator[str]:
        if self.is_down():
            yield from serving(self.fallback()).stream(messages, params, result)
            return
        pieces = serving(self.primary).stream(messages, params, result)
        try:
            first = next(pieces)
        except StopIteration:
            return
        except OpenAIServerError as exc:
            self.went_down(exc)
            result.prompt_tokens, result.new_tokens = 0, 0
            result.timings.clear()
            yield from serving(self.fallback()).stream(messages, params, result)
            return
        self.came_back()
        yield first
        yield from pieces

    # --- the outage ----------------------------------------------------------------------------------------

    def current(self) -> Backend:
        """The backend for the next answer: after a successful check of the server this wrapper (which still
        falls back if the answer fails at its start), during an outage the fallback."""
        if not self.is_down():
            try:
                self._ping()
            except OpenAIServerError as exc:
                self.went_down(exc)
        return serving(self.fallback()) if self.is_down() else self

    def is_down(self) -> bool:
        """True during an outage's cool-down; once it has passed the server gets its next try."""
        with self._lock:
            return self._down_until is not None and self.clock() < self._down_until

    def went_down(self, reason: Exception) -> None:
        with self._lock:
            first = self._down_until is None
            self._down_until = self.clock() + self.retry_seconds
        if first:
            self.outages += 1
            log.warning(
                "%s Answering with the local backend; the server is tried again every %g s.", reason, self.retry_seconds
            )
        else:
            log.debug("Still down: %s", reason)

    def came_back(self) -> None:
        with self._lock:
            was_down, self._down_until = self._down_until is not None, None
        if was_down:
            log.warning("The generation server answers again; answering with it.")

    def fallback(self) -> Backend:
        with self._lock:
            if self._fallback is None:
                try:
                    self._fallback = self._make_fallback()
                except DomainbotError as exc:
                    raise DomainbotError(
                        f"The generation server is down and the local fallback backend cannot start: {exc}"
                    ) from None
            return self._fallback

    def _active(self) -> Backend:
        with self._lock:
            down = self._down_until is not None
        return self.fallback() if down else self.primary
