"""Retries: flood control waits as asked, network errors back off, requests Telegram refused are not resent."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable

import pytest
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TimedOut

from bot.telegram.delivery import RetryPolicy, call_api, retry_seconds

FAST = RetryPolicy(attempts=4, backoff=0.01, max_backoff=0.04, max_flood_wait=5.0)


def flaky(*errors: Exception) -> tuple[Callable[[], asyncio.Future[str]], list[float]]:
    """A call that raises `errors` in turn, then returns "ok"; and the times it was made."""
    pending = list(errors)
    times: list[float] = []

    async def call() -> str:
        times.append(time.monotonic())
        if pending:
            raise pending.pop(0)
        return "ok"

    return call, times  # type: ignore[return-value]


def test_retry_after_waits_as_long_as_the_server_asks() -> None:
    call, times = flaky(RetryAfter(1))
    assert asyncio.run(call_api(call, FAST)) == "ok"
    assert len(times) == 2 and times[1] - times[0] >= 0.99
    assert retry_seconds(RetryAfter(3)) == 3.0


def test_network_errors_are_retried_with_doubling_back_off() -> None:
    call, times = flaky(NetworkError("Bad Gateway"), TimedOut(), NetworkError("Internal Server Error (500)"))
    assert asyncio.run(call_api(call, FAST)) == "ok"
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(gaps) == 3
    assert gaps[0] >= 0.01 and gaps[1] >= 0.02 and gaps[2] >= 0.04


@pytest.mark.parametrize("error", [BadRequest("Bad Request: chat not found"), Forbidden("bot was blocked")])
def test_requests_telegram_refused_are_not_resent(error: Exception) -> None:
    call, times = flaky(error)
    with pytest.raises(type(error)):
        asyncio.run(call_api(call, FAST))
    assert len(times) == 1


def test_giving_up_after_the_last_attempt_or_an_unreasonable_wait() -> None:
    call, times = flaky(*[NetworkError("down")] * 10)
    with pytest.raises(NetworkError):
        asyncio.run(call_api(call, FAST))
    assert len(times) == FAST.attempts
    call, times = flaky(RetryAfter(3600))
    with pytest.raises(RetryAfter):
        asyncio.run(call_api(call, FAST))
    assert len(times) == 1
