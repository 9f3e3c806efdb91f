"""Allow-lists, admins and the per-user rate limit, on a clock the test moves."""

from __future__ import annotations

import pytest

from bot.telegram.access import AccessPolicy, Gate, Incoming, RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def private(user: int) -> Incoming:
    return Incoming(user, user, private=True, addressed=True)


def in_group(user: int, chat: int, addressed: bool = True) -> Incoming:
    return Incoming(user, chat, private=False, addressed=addressed)


@pytest.mark.parametrize(
    ("users", "chats", "user", "chat", "allowed"),
    [
        ((), (), 5, 5, True),  # no lists: open to everyone
        ((1,), (), 1, 1, True),
        ((1,), (), 2, 2, False),
        ((1,), (), 9, 9, True),  # an admin needs no listing
        ((), (-100,), 2, -100, True),  # any member of an allowed group, in that group
        ((), (-100,), 2, 2, False),  # ... but not in private
        ((), (-100,), 2, -200, False),
    ],
)
def test_policy(users: tuple[int, ...], chats: tuple[int, ...], user: int, chat: int, allowed: bool) -> None:
    assert AccessPolicy(admins=[9], users=users, chats=chats).allows(user, chat) is allowed


def test_rate_limiter_is_a_sliding_window_per_user() -> None:
    clock = Clock()
    limiter = RateLimiter(2, 60.0, clock)
    assert [limiter.hit(1), limiter.hit(1)] == [0.0, 0.0]
    assert limiter.hit(1) == pytest.approx(60.0)
    assert limiter.hit(2) == 0.0  # another user has a window of their own
    clock.now += 30
    assert limiter.hit(1) == pytest.approx(30.0)
    clock.now += 30.5
    assert limiter.hit(1) == 0.0
    assert RateLimiter(0, 1.0, clock).hit(1) == 0.0  # 0 turns the limit off


def test_strangers_are_refused_once_then_ignored() -> None:
    gate = Gate(AccessPolicy(users=[1]), RateLimiter(0, 1.0))
    assert [gate.check(private(7)).action for _ in range(3)] == ["refuse", "ignore", "ignore"]
    assert gate.check(private(1)).action == "pass"
    # A group not on the list is told once, whoever writes.
    assert gate.check(in_group(7, -5)).action == "refuse"
    assert gate.check(in_group(8, -5)).action == "ignore"


def test_unaddressed_group_messages_and_senderless_updates_are_ignored_before_anything_else() -> None:
    gate = Gate(AccessPolicy(users=[1]), RateLimiter(1, 60.0))
    assert gate.check(in_group(7, -5, addressed=False)).action == "ignore"
    assert gate.check(Incoming(None, None, private=False, addressed=True)).action == "ignore"
    assert gate.check(in_group(1, -5, addressed=False)).action == "ignore"
    assert gate.check(in_group(1, -5)).action == "pass"  # the ignored messages did not count


def test_over_the_limit_one_friendly_note_per_window_and_admins_are_exempt() -> None:
    clock = Clock()
    gate = Gate(AccessPolicy(admins=[9]), RateLimiter(1, 10.0, clock))
    assert gate.check(private(1)).action == "pass"
    verdict = gate.check(private(1))
    assert verdict.action == "slow_down" and verdict.retry_in == pytest.approx(10.0)
    assert gate.check(private(1)).action == "ignore"
    clock.now += 10.5
    assert gate.check(private(1)).action == "pass"
    assert {gate.check(private(9)).action for _ in range(5)} == {"pass"}
