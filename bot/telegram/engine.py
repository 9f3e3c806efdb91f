"""The worker threads the pipeline runs on, so generation never blocks the event loop.

`workers` questions of different chats are answered at once: a batching backend (the transformers backend with
`DOMAINBOT_MAX_BATCH` > 1, or an OpenAI-compatible server) generates them together, and an upload being
ingested does not hold up questions. A backend that cannot batch (llama.cpp) answers them one after another
behind its own lock. One chat's messages are kept in order by `BotCore.turn`, not here. The event loop keeps
serving every chat meanwhile: commands, ratings and typing actions do not wait for a question being answered.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class Engine:
    """Runs calls on a pool of `workers` threads; with one, one at a time and in order."""

    def __init__(self, workers: int = 1) -> None:
        if workers < 1:
            raise ValueError(f"An engine needs at least one worker thread, got {workers}.")
        self.workers = workers
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="domainbot-engine")

    def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn` on an engine thread and wait for it (for start-up, outside the event loop)."""
        return self._executor.submit(fn, *args, **kwargs).result()

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn` on an engine thread without blocking the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
