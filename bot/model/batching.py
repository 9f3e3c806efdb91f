"""Concurrent answers from one batched decode loop over the transformers backend (continuous batching).

`BatchingBackend` wraps a `TransformersBackend`. Any number of threads may call `stream()` at once; each call
queues a request and reads its answer from its own output queue, while one daemon thread runs the model:

- A request that arrives while others decode is prefilled on its own (batch 1, exactly the single-request
  prefill) and joins the running batch at the next step. Rows are aligned on the right: a row shorter than the
  batch's KV cache is padded on the left (or the batch is, when the newcomer is longer), and every step passes
  a per-row attention mask that hides the padding and explicit position ids, so each row sees exactly the
  positions and keys it would see alone. (A newcomer's prefill pauses the running rows for its length; prompts
  are not split into chunks.)
- A row leaves the batch as soon as it ends (end-of-turn token, stop string, max_new_tokens, or its caller
  closed the stream) and frees its slot; cache columns that are padding in every remaining row are dropped.
- Sampling stays per request: each row keeps its own parameters, seeded generator, repetition-penalty history,
  incremental decoder and stop strings, the same pieces the single-request decode loop uses.

Backpressure, by choice, goes one way only. Waiting requests sit in a bounded queue (a full queue refuses a new
request at once with `BackendBusyError`, so a front end can answer "busy" instead of piling up work). Output
is not throttled: a caller that stops reading without closing its stream does not stall the batch; its row runs
to its end and its pieces wait in its queue, at most `max_new_tokens` of them.

Failures stay as small as they can be: a prefill that raises fails only its request; a batched step that raises
fails the rows in that step (with `BatchGenerationError` naming the cause) and the loop goes on with the next
requests. The loop thread holds only a weak reference to the backend while idle, so a discarded backend (an old
adapter after a switch) is freed and its thread ends; `close()` ends it at once.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import queue
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bot.errors import DomainbotError
from bot.model.backend import (
    AnswerText,
    GenerationParams,
    GenerationResult,
    Message,
    TransformersBackend,
    answer_budget,
    choose_next_token,
)

if TYPE_CHECKING:
    import torch

    from bot.model.loader import LoadedModel

log = logging.getLogger(__name__)

DEFAULT_MAX_WAITING = 64
# How often an idle loop thread looks whether its backend is still alive, and a waiting caller whether the
# loop thread is.
POLL_SECONDS = 0.5
CLOSE_WAIT_SECONDS = 5.0


class BackendBusyError(DomainbotError):
    """Too many requests are waiting for a slot in the batch."""


class BatchGenerationError(DomainbotError):
    """The batched model step failed; every answer in that step ends with this error."""


def supports_batching(model: Any) -> bool:
    """True when every layer of the model's KV cache is a plain growing cache, so rows can be padded on the left.

    Sliding-window and recurrent layers count positions in cache columns, which padding would shift.
    """
    try:
        from transformers import DynamicCache
        from transformers.cache_utils import DynamicLayer

        layers = DynamicCache(config=model.config).layers
    except Exception:  # an old transformers, or a config its cache classes do not understand
        return False
    return bool(layers) and all(type(layer) is DynamicLayer for layer in layers)


# --- what flows back to a caller ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Piece:
    text: str
    new_tokens: int
    first_token: float


@dataclass(frozen=True)
class _Done:
    finish_reason: str
    new_tokens: int
    timings: dict[str, float]


@dataclass(frozen=True)
class _Failed:
    error: Exception


_Event = _Piece | _Done | _Failed


@dataclass
class _Request:
    prompt: list[int]
    params: GenerationParams
    started: float
    out: queue.SimpleQueue[_Event] = field(default_factory=queue.SimpleQueue)
    cancelled: threading.Event = field(default_factory=threading.Event)


class _Row:
    """One answer being decoded in the batch: the per-token logic of `bot.model.backend.decode`, one token at a
    time."""

    def __init__(self, request: _Request, loaded: LoadedModel, eos_ids: frozenset[int], context_window: int) -> None:
        import torch

        self.request = request
        self.params = request.params
        self.eos_ids = eos_ids
        prompt = request.prompt
        self.budget = answer_budget(self.params, context_window, len(prompt))
        self.generator: torch.Generator | None = None
        if self.params.temperature > 0.0:
            self.generator = torch.Generator(device="cpu")
            self.generator.manual_seed(self.params.seed if self.params.seed is not None else torch.seed())
        self.seen = torch.empty(len(prompt) + max(self.budget, 0), dtype=torch.long)  # prompt then answer ids
        self.seen[: len(prompt)] = torch.tensor(prompt, dtype=torch.long)
        self.length = len(prompt)
        self.text = AnswerText(loaded.tokenizer, self.params.stop)
        self.new_tokens = 0
        self.first_token = 0.0
        self.next_token = -1  # chosen, not yet in the KV cache: the row's input at the next step
        self.pad = 0  # left-padding columns of this row in the batch's cache
        self.finished = False

    def choose(self, logits: torch.Tensor) -> int:
        """The next token from this row's (V,) logits, with its own parameters and generator."""
        return choose_next_token(logits, self.seen[: self.length], self.params, self.generator)

    def accept(self, token: int) -> None:
        """Take a chosen token: emit its text, or finish the row on end-of-turn, a stop string or the budget."""
        if not self.first_token:
            self.first_token = time.perf_counter() - self.request.started
        if token in self.eos_ids:
            self.finish("eos")
            return
        self.seen[self.length] = token
        self.length += 1
        self.new_tokens += 1
        piece = self.text.push(token)
        if piece:
            self.request.out.put(_Piece(piece, self.new_tokens, self.first_token))
        if self.text.stopped:
            self.finish("stop")
        elif self.new_tokens >= self.budget:
            self.finish("length")
        else:
            self.next_token = token

    def finish(self, reason: str) -> None:
        tail = self.text.finish()
        if tail:
            self.request.out.put(_Piece(tail, self.new_tokens, self.first_token))
        if self.text.stopped:
            reason = "stop"
        timings = {"generate": time.perf_counter() - self.request.started}
        if self.first_token:
            timings["first_token"] = self.first_token
        self.request.out.put(_Done(reason, self.new_tokens, timings))
        self.finished = True

    def fail(self, error: Exception) -> None:
        self.request.out.put(_Failed(error))
        self.finished = True


class _Batch:
    """The rows decoding together and their shared KV cache, whose columns are aligned on the right."""

    def __init__(self) -> None:
        self.rows: list[_Row] = []
        self.cache: Any = None
        self.length = 0  # columns in the cache

    def join(self, row: _Row, cache: Any) -> None:
        """Add a prefilled row whose own cache (batch 1) holds its prompt."""
        import torch

        new_length = cache.get_seq_length()
        if not self.rows:
            self.rows, self.cache, self.length, row.pad = [row], cache, new_length, 0
            return
        grow = max(0, new_length - self.length)  # the batch is padded when the newcomer is longer
        row.pad = max(0, self.length - new_length)
        for mine, theirs in zip(self.cache.layers, cache.layers, strict=True):
            for name in ("keys", "values"):
                batch_states, row_states = getattr(mine, name), getattr(theirs, name)  # (B, H, T, D), (1, H, T', D)
                if grow:
                    batch_states = _pad_left(batch_states, grow)
                if row.pad:
                    row_states = _pad_left(row_states, row.pad)
                setattr(mine, name, torch.cat([batch_states, row_states], dim=0))
        for other in self.rows:
            other.pad += grow
        self.length += grow
        self.rows.append(row)

    def drop_finished(self) -> None:
        """Remove ended rows from the batch and their cache, then the columns that are padding in every row."""
        import torch

        keep = [i for i, row in enumerate(self.rows) if not row.finished]
        if len(keep) == len(self.rows):
            return
        self.rows = [self.rows[i] for i in keep]
        if not self.rows:
            self.cache, self.length = None, 0
            return
        device = self.cache.layers[0].keys.device
        self.cache.batch_select_indices(torch.tensor(keep, device=device))
        unused = min(row.pad for row in self.rows)
        if unused:
            for layer in self.cache.layers:
                layer.keys = layer.keys[:, :, unused:, :]
                layer.values = layer.values[:, :, unused:, :]
            for row in self.rows:
                row.pad -= unused
            self.length -= unused

    def fail_all(self, error: Exception) -> None:
        for row in self.rows:
            row.fail(error)
        self.rows, self.cache, self.length = [], None, 0


def _pad_left(states: torch.Tensor, columns: int) -> torch.Tensor:
    import torch

    shape = (*states.shape[:-2], columns, states.shape[-1])
    return torch.cat([states.new_zeros(shape), states], dim=-2)


class BatchingBackend:
    """A Backend that serves concurrent `stream()` calls from one batched decode loop over `inner`'s model."""

    def __init__(self, inner: TransformersBackend, max_batch: int = 8, max_waiting: int = DEFAULT_MAX_WAITING) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        if max_waiting < 1:
            raise ValueError(f"max_waiting must be at least 1, got {max_waiting}")
        self.inner = inner
        self.max_batch = max_batch
        self.max_waiting = max_waiting
        self._inbox: queue.Queue[_Request] = queue.Queue(maxsize=max_waiting)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        # The loop thread must end once this backend is garbage, even if nobody calls close().
        weakref.finalize(self, self._stop.set)
        _OPEN.add(self)

    # --- the Backend protocol --------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def model_name(self) -> str:
        return self.inner.model_name

    @property
    def adapter(self) -> str | None:
        return self.inner.adapter

    @property
    def loaded(self) -> LoadedModel:
        """The wrapped model, for callers that need the torch module itself (evaluation)."""
        return self.inner.loaded

    def encode(self, messages: Sequence[Message]) -> list[int]:
        """The prompt's token ids, as the wrapped backend renders them."""
        return self.inner.encode(messages)

    def count_tokens(self, messages: Sequence[Message]) -> int:
        return self.inner.count_tokens(messages)

    def context_window(self) -> int:
        return self.inner.context_window()

    def stream(self, messages: Sequence[Message], params: GenerationParams, result: GenerationResult) -> Iterator[str]:
        started = time.perf_counter()
        prompt = self.inner.encode(messages)  # in the caller's thread: a prompt that cannot be encoded fails here
        result.timings["prompt"] = time.perf_counter() - started
        result.prompt_tokens = len(prompt)
        request = _Request(prompt, params, started)
        self._submit(request)
        try:
            while True:
                event = self._next_event(request)
                if isinstance(event, _Piece):
                    result.new_tokens = event.new_tokens
                    result.timings.setdefault("first_token", event.first_token)
                    yield event.text
                elif isinstance(event, _Done):
                    result.new_tokens = event.new_tokens
                    result.finish_reason = event.finish_reason
                    result.timings.update(event.timings)
                    return
                else:
                    raise event.error
        finally:
            # Closed early (or failed): the loop drops the row at its next step and frees the slot.
            request.cancelled.set()

    # --- running the loop ------------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the loop thread and wait for it to end; answers in flight and waiting end with an error."""
        self._stop.set()
        wake = _Request([], GenerationParams(), time.perf_counter())
        wake.cancelled.set()
        # An idle loop stops now, not at its next poll; a full inbox means a busy loop, which checks every step.
        with contextlib.suppress(queue.Full):
            self._inbox.put_nowait(wake)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(CLOSE_WAIT_SECONDS)

    def _submit(self, request: _Request) -> None:
        with self._lock:
            if self._stop.is_set():
                raise DomainbotError("This model backend was closed; open a new one to generate.")
            try:
                self._inbox.put_nowait(request)
            except queue.Full:
                raise BackendBusyError(
                    f"The model is busy: {self.max_waiting} requests are already waiting. Try again shortly."
                ) from None
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=_run, args=(weakref.ref(self), self._inbox, self._stop), name="batch-decode", daemon=True
                )
                self._thread.start()

    def _next_event(self, request: _Request) -> _Event:
        while True:
            try:
                return request.out.get(timeout=POLL_SECONDS)
            except queue.Empty:
                thread = self._thread
                # A loop thread that is gone cannot answer: fail instead of waiting forever.
                if thread is None or not thread.is_alive():
                    try:
                        return request.out.get_nowait()
                    except queue.Empty:
                        return _Failed(BatchGenerationError("The generation loop stopped before this answer ended."))

    def _serve(self, first: _Request) -> None:
        """Decode until no row is left and nobody waits; called by the loop thread with a strong reference."""
        batch = _Batch()
        pending: list[_Request] = [first]
        try:
            self._decode_until_idle(batch, pending)
        except Exception as exc:  # a fault in the loop itself: end the answers it holds, keep the thread
            log.exception("The batched generation loop failed.")
            error = BatchGenerationError(f"The generation loop failed: {type(exc).__name__}: {exc}")
            batch.fail_all(error)
            for request in pending:
                request.out.put(_Failed(error))

    def _decode_until_idle(self, batch: _Batch, pending: list[_Request]) -> None:
        import torch

        with torch.inference_mode():
            while True:
                if self._stop.is_set():
                    closed = DomainbotError("This model backend was closed while the answer was generated.")
                    batch.fail_all(closed)
                    for request in pending + _drain(self._inbox):
                        request.out.put(_Failed(closed))
                    return
                while len(batch.rows) < self.max_batch:
                    waiting = pending.pop() if pending else _get_nowait(self._inbox)
                    if waiting is None:
                        break
                    if not waiting.cancelled.is_set():
                        self._admit(batch, waiting)
                for row in batch.rows:
                    if row.request.cancelled.is_set():
                        row.finished = True  # nobody reads it any more
                batch.drop_finished()
                if not batch.rows:
                    if self._inbox.empty():
                        return
                    continue
                try:
                    self._step(batch)
                except Exception as exc:
                    log.exception("A batched generation step failed for %d answers.", len(batch.rows))
                    error = BatchGenerationError(
                        f"Generation failed in a batch of {len(batch.rows)} answers: {type(exc).__name__}: {exc}"
                    )
                    error.__cause__ = exc
                    batch.fail_all(error)
                    continue
                batch.drop_finished()

    def _admit(self, batch: _Batch, request: _Request) -> None:
        """Prefill `request` alone and add it to the batch (unless it ends at its first token)."""
        import torch
        from transformers import DynamicCache

        loaded = self.inner.loaded
        try:
            row = _Row(request, loaded, self.inner.eos_ids, self.inner.context_window())
            if row.budget <= 0:
                row.finish("length")
                return
            cache = DynamicCache()
            ids = torch.tensor([request.prompt], dtype=torch.long, device=loaded.device)  # (1, T)
            out = loaded.model(input_ids=ids, use_cache=True, logits_to_keep=1, **{self.inner.cache_arg: cache})
            row.accept(row.choose(out.logits[0, -1].float().cpu()))
        except Exception as exc:
            request.out.put(_Failed(exc))
            return
        if not row.finished:
            batch.join(row, cache)

    def _step(self, batch: _Batch) -> None:
        """One decode step for every row: feed each row's last token, choose each row's next."""
        import torch

        loaded = self.inner.loaded
        device = loaded.device
        rows = batch.rows
        ids = torch.tensor([[row.next_token] for row in rows], dtype=torch.long, device=device)  # (B, 1)
        pads = torch.tensor([row.pad for row in rows], dtype=torch.long, device=device)  # (B,)
        columns = torch.arange(batch.length + 1, device=device)
        mask = (columns[None, :] >= pads[:, None]).long()  # (B, L + 1): 0 on each row's left padding
        positions = (batch.length - pads)[:, None]  # (B, 1): the row's own position, padding not counted
        out = loaded.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
            **{self.inner.cache_arg: batch.cache},
        )
        batch.length += 1
        logits = out.logits[:, -1].float().cpu()  # (B, V)
        for row, row_logits in zip(rows, logits, strict=True):
            row.accept(row.choose(row_logits))


def _run(ref: weakref.ref[BatchingBackend], inbox: queue.Queue[_Request], stop: threading.Event) -> None:
    # A weak reference while idle, so the thread does not keep a discarded backend (and its weights) alive.
    while not stop.is_set():
        try:
            first = inbox.get(timeout=POLL_SECONDS)
        except queue.Empty:
            if ref() is None:
                return
            continue
        backend = ref()
        if backend is None:
            first.out.put(_Failed(DomainbotError("This model backend was discarded before the answer started.")))
            return
        backend._serve(first)
        del backend


# Backends whose loop may be running, closed at exit: a daemon thread caught inside a torch call while the
# interpreter shuts down aborts the whole process ("terminate called without an active exception").
_OPEN: weakref.WeakSet[BatchingBackend] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for backend in list(_OPEN):
        backend.close()


def _get_nowait(inbox: queue.Queue[_Request]) -> _Request | None:
    try:
        return inbox.get_nowait()
    except queue.Empty:
        return None


def _drain(inbox: queue.Queue[_Request]) -> list[_Request]:
    requests = []
    while (request := _get_nowait(inbox)) is not None:
        requests.append(request)
    return requests
