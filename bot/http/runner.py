"""Runs the synchronous pipeline for the event loop: a bounded pool of worker threads, pieces as they come.

Several conversations are answered at once (up to `workers`); the questions of one conversation are answered
one after another, in order, so each sees the history the previous one left. A consumer that stops listening
(an HTTP client gone) stops its generation: the next piece raises `ClientGone` inside the worker, which makes
the pipeline close the model's stream, and a request still waiting for a worker never starts.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

from bot.pipeline import Answer, OnPiece

AnswerCall = Callable[[OnPiece], Answer]
Disconnected = Callable[[], Awaitable[None]]


class ClientGone(Exception):
    """Raised inside a worker when nobody reads the answer any more; it ends the generation."""


class _Signal:
    """Marks the end of the pieces in the queue: the worker finished, or the client left."""


FINISHED, LEFT = _Signal(), _Signal()


class AnswerRunner:
    """A bounded pool of answering threads, with one answer at a time per conversation."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="domainbot-answer")
        self._turns: dict[str, asyncio.Lock] = {}
        self._waiting: dict[str, int] = {}

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def stream(
        self, conversation: str | None, call: AnswerCall, disconnected: Disconnected | None = None
    ) -> AsyncGenerator[str | Answer, None]:
        """Yield the answer's pieces as a worker generates them, then the Answer. `call(on_piece)` runs on a
        worker; its exception is raised here. Closing this iterator early stops the generation, and so does
        `disconnected()` returning (then `ClientGone` is raised here)."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | _Signal] = asyncio.Queue()
        gone = threading.Event()
        watcher = None if disconnected is None else asyncio.ensure_future(_watch(disconnected, gone, queue))

        def on_piece(piece: str) -> None:
            if gone.is_set():
                raise ClientGone
            loop.call_soon_threadsafe(queue.put_nowait, piece)

        try:
            release = await self._take_turn(conversation)
            if gone.is_set():  # left while the conversation's previous answer was being written
                release()
                raise ClientGone
            try:
                future = loop.run_in_executor(self.executor, call, on_piece)
            except BaseException:
                release()
                raise

            def finished(done: asyncio.Future[Answer]) -> None:
                # The conversation's turn ends when the worker does, even if this iterator was closed long before.
                release()
                if not done.cancelled():
                    done.exception()  # retrieved, so an answer nobody waits for does not log "never retrieved"
                queue.put_nowait(FINISHED)

            future.add_done_callback(finished)
            try:
                while not isinstance(item := await queue.get(), _Signal):
                    yield item
                if item is LEFT:
                    raise ClientGone
                yield await future
            finally:
                gone.set()
                future.cancel()  # only a request still waiting for a worker; a running one stops at its next piece
        finally:
            if watcher is not None:
                watcher.cancel()

    async def _take_turn(self, conversation: str | None) -> Callable[[], None]:
        if conversation is None:
            return lambda: None
        lock = self._turns.setdefault(conversation, asyncio.Lock())
        self._waiting[conversation] = self._waiting.get(conversation, 0) + 1
        try:
            await lock.acquire()
        except BaseException:
            self._leave(conversation)
            raise

        def release() -> None:
            lock.release()
            self._leave(conversation)

        return release

    def _leave(self, conversation: str) -> None:
        self._waiting[conversation] -= 1
        if not self._waiting[conversation]:
            del self._waiting[conversation], self._turns[conversation]


async def _watch(disconnected: Disconnected, gone: threading.Event, queue: asyncio.Queue[str | _Signal]) -> None:
    await disconnected()
    gone.set()
    queue.put_nowait(LEFT)
