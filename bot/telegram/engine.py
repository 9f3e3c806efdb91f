"""The worker thread the pipeline lives on, so generation never blocks the event loop.

One thread: one model answers one question at a time here anyway (a second thread would only share the same
CPU cores; the HTTP API, which serves many clients, runs a pool). The event loop keeps serving every chat
meanwhile: commands, ratings and typing actions do not wait for a question being answered.
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
    """Runs calls one at a time, in order, on its own thread."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="domainbot-engine")

    def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn` on the engine thread and wait for it (for start-up, outside the event loop)."""
        return self._executor.submit(fn, *args, **kwargs).result()

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn` on the engine thread without blocking the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
