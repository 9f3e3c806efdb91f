"""Telegram's flood control, honoured for every Bot API call the bot makes.

A `RetryAfter` (HTTP 429) names how long the bot must wait. Telegram counts per bot, so one such answer
pauses all sending, not just the call that got it: every call waits until the pause is over, then tries again.
A call gives up (raising the `RetryAfter`) only once its own waits add up to more than `max_wait` seconds.
python-telegram-bot routes every call except getUpdates through this object (`ApplicationBuilder.rate_limiter`).

It also lets at most `max_in_flight` calls run at once; the rest wait their turn in order. Without that, a
burst of calls queues inside httpx's connection pool, where a waiting request can lose its connection to a
newer one again and again: under load (bench/telegram_load.py) single answers were held back for 10 s.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import warnings
from collections.abc import Callable, Coroutine
from typing import Any

from telegram.error import RetryAfter
from telegram.ext import BaseRateLimiter

log = logging.getLogger(__name__)

Result = bool | dict[str, Any] | list[dict[str, Any]]


def retry_seconds(exc: RetryAfter) -> float:
    """How long the server asked to wait, whichever type this version of the library reports it in."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)


class FloodControl(BaseRateLimiter[None]):
    """Pause every call of the bot while Telegram's flood control asks it to wait, then try again; and keep the
    calls in flight at once to `max_in_flight`."""

    def __init__(
        self, max_wait: float = 120.0, max_in_flight: int = 32, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_wait = max_wait
        self.clock = clock
        self.paused_until = 0.0
        self.pauses = 0
        self.slots = asyncio.Semaphore(max_in_flight)

    async def initialize(self) -> None:
        self.paused_until = 0.0

    async def shutdown(self) -> None:
        return None

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, Result]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: None,
    ) -> Result:
        waited = 0.0
        while True:
            delay = self.paused_until - self.clock()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                async with self.slots:
                    return await callback(*args, **kwargs)
            except RetryAfter as exc:
                wait = retry_seconds(exc)
                waited += wait
                if waited > self.max_wait:
                    raise
                self.paused_until = max(self.paused_until, self.clock() + wait)
                self.pauses += 1
                log.warning("Telegram flood control: sending paused for %.1f s (%s)", wait, endpoint)
