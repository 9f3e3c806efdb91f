"""Who the bot answers, and how often: the allow-lists, admin rights and a per-user rate limit.

Every update passes the gate before any handler sees it. An update from someone not allowed gets one polite
refusal (then silence) and is neither processed nor stored; a user over the rate limit gets one friendly note
per window.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

Action = Literal["pass", "ignore", "refuse", "slow_down"]


@dataclass(frozen=True)
class Incoming:
    """What the gate knows of an update."""

    user_id: int | None
    chat_id: int | None
    private: bool
    addressed: bool
    """A private message, a command for this bot, a mention of it, a reply to it, or a press on its buttons."""


@dataclass(frozen=True)
class Verdict:
    action: Action
    retry_in: float = 0.0


class AccessPolicy:
    """Allow-lists of users and group chats, and the admins (always allowed). No lists: everyone is allowed."""

    def __init__(self, admins: Iterable[int] = (), users: Iterable[int] = (), chats: Iterable[int] = ()) -> None:
        self.admins = frozenset(admins)
        self.users = frozenset(users)
        self.chats = frozenset(chats)

    @property
    def open(self) -> bool:
        return not self.users and not self.chats

    def is_admin(self, user_id: int | None) -> bool:
        return user_id is not None and user_id in self.admins

    def allows(self, user_id: int, chat_id: int | None) -> bool:
        if self.open or user_id in self.admins or user_id in self.users:
            return True
        return chat_id is not None and chat_id in self.chats


class RateLimiter:
    """At most `limit` events per `window` seconds for each key (a sliding window); limit 0 means no limit."""

    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        if limit < 0 or window <= 0:
            raise ValueError(f"expected limit >= 0 and window > 0, got {limit} and {window}")
        self.limit = limit
        self.window = window
        self.clock = clock
        self.events: dict[int, deque[float]] = {}

    def hit(self, key: int) -> float:
        """Count one event; returns 0 if it is within the limit, else the seconds until one would be."""
        if self.limit == 0:
            return 0.0
        now = self.clock()
        events = self.events.setdefault(key, deque())
        while events and events[0] <= now - self.window:
            events.popleft()
        if len(events) >= self.limit:
            return events[0] + self.window - now
        events.append(now)
        return 0.0


class Gate:
    """Decides for each update: pass it on, ignore it, refuse it (once), or ask the user to slow down (once)."""

    def __init__(self, policy: AccessPolicy, limiter: RateLimiter) -> None:
        self.policy = policy
        self.limiter = limiter
        # Only people who write to the bot land here, so these sets grow with its audience, not with traffic.
        self.refused: set[tuple[int, int | None]] = set()
        self.warned_until: dict[int, float] = {}

    def check(self, incoming: Incoming) -> Verdict:
        user = incoming.user_id
        if user is None or not incoming.addressed:
            return Verdict("ignore")
        if not self.policy.allows(user, incoming.chat_id):
            # In a group the refusal goes to the chat once; in private, to the user once.
            key = (user, None) if incoming.private else (0, incoming.chat_id)
            if key in self.refused:
                return Verdict("ignore")
            self.refused.add(key)
            return Verdict("refuse")
        if self.policy.is_admin(user):
            return Verdict("pass")
        wait = self.limiter.hit(user)
        if wait <= 0:
            return Verdict("pass")
        now = self.limiter.clock()
        if self.warned_until.get(user, 0.0) > now:
            return Verdict("ignore")
        self.warned_until[user] = now + wait
        return Verdict("slow_down", wait)
