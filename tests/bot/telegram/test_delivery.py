"""Retries: flood control pauses every call as long as Telegram asks; network errors back off; requests
Telegram refused are not resent."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from typing import Any

import pytest
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TimedOut

from bot.telegram.delivery import RetryPolicy, call_api
from bot.telegram.flood import FloodControl, retry_seconds

FAST = RetryPolicy(attempts=4, backoff=0.01, max_backoff=0.04)


def flaky(*errors: Exception) -> tuple[Callable[[], Any], list[float]]:
    """A call that raises `errors` in turn, then returns "ok"; and the times it was made."""
    pending = list(errors)
    times: list[float] = []

    async def call() -> str:
        times.append(time.monotonic())
        if pending:
            raise pending.pop(0)
        return "ok"

    return call, times


async def through(flood: FloodControl, call: Callable[[], Any]) -> Any:
    return await flood.process_request(call, (), {}, "sendMessage", {}, None)


def test_flood_control_pauses_every_call_as_long_as_telegram_asks() -> None:
    flood = FloodControl()
    first, first_times = flaky(RetryAfter(1))
    second, second_times = flaky()

    async def both() -> list[Any]:
        one = asyncio.create_task(through(flood, first))
        await asyncio.sleep(0.1)  # the first call has had its 429 by now
        return [await through(flood, second), await one]

    assert asyncio.run(both()) == ["ok", "ok"]
    assert first_times[1] - first_times[0] >= 0.99
    assert second_times[0] - first_times[0] >= 0.99  # it waited for the pause it did not cause
    assert flood.pauses == 1
    assert retry_seconds(RetryAfter(3)) == 3.0


def test_flood_control_gives_up_past_its_longest_wait() -> None:
    call, times = flaky(RetryAfter(30))
    with pytest.raises(RetryAfter):
        asyncio.run(through(FloodControl(max_wait=10), call))
    assert len(times) == 1


def test_flood_control_keeps_calls_in_flight_to_its_limit() -> None:
    flood = FloodControl(max_in_flight=2)
    running: list[int] = []
    most = 0

    async def call() -> str:
        nonlocal most
        running.append(1)
        most = max(most, len(running))
        await asyncio.sleep(0.01)
        running.pop()
        return "ok"

    async def many() -> list[Any]:
        return await asyncio.gather(*(through(flood, call) for _ in range(6)))

    assert asyncio.run(many()) == ["ok"] * 6
    assert most == 2


def test_network_errors_are_retried_with_doubling_back_off() -> None:
    call, times = flaky(NetworkError("Bad Gateway"), TimedOut(), NetworkError("Internal Server Error (500)"))
    assert asyncio.run(call_api(call, FAST)) == "ok"
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(gaps) == 3
    assert gaps[0] >= 0.01 and gaps[1] >= 0.02 and gaps[2] >= 0.04


@pytest.mark.parametrize(
    "error", [BadRequest("Bad Request: chat not found"), Forbidden("bot was blocked"), RetryAfter(3600)]
)
def test_requests_telegram_refused_are_not_resent(error: Exception) -> None:
    call, times = flaky(error)
    with pytest.raises(type(error)):
        asyncio.run(call_api(call, FAST))
    assert len(times) == 1


def test_giving_up_after_the_last_attempt() -> None:
    call, times = flaky(*[NetworkError("down")] * 10)
    with pytest.raises(NetworkError):
        asyncio.run(call_api(call, FAST))
    assert len(times) == FAST.attempts
