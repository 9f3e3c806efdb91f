"""The rating keyboard under every answer, and the callback data its buttons carry.

Callback data is `rate:<interaction id>:up|down` or `fix:<interaction id>` (at most 64 bytes, as the Bot API
allows). Anything else, from an old version or a forged client, parses to None.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

_DATA = re.compile(r"(rate|fix):([0-9a-f]{8,40})(?::(up|down))?")

Choice = Literal["up", "down", "correct"]


@dataclass(frozen=True)
class Press:
    interaction_id: str
    choice: Choice

    @property
    def value(self) -> int:
        return 1 if self.choice == "up" else -1


def rating_keyboard(interaction_id: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton("👍", callback_data=f"rate:{interaction_id}:up"),
                InlineKeyboardButton("👎", callback_data=f"rate:{interaction_id}:down"),
                InlineKeyboardButton("✍️ Correct", callback_data=f"fix:{interaction_id}"),
            ]
        ]
    )


def parse_press(data: object) -> Press | None:
    """The button a callback came from, or None when its data is not one of ours."""
    if not isinstance(data, str):
        return None
    found = _DATA.fullmatch(data)
    if found is None:
        return None
    kind, interaction_id, direction = found.groups()
    if kind == "rate" and direction == "up":
        return Press(interaction_id, "up")
    if kind == "rate" and direction == "down":
        return Press(interaction_id, "down")
    if kind == "fix" and direction is None:
        return Press(interaction_id, "correct")
    return None
