"""The rating keyboard's callback data: ours parses, anything else is None."""

from __future__ import annotations

import pytest

from bot.telegram.keyboards import Press, parse_press, rating_keyboard

INTERACTION = "0123456789abcdef0123456789abcdef"


def test_every_button_round_trips_within_telegrams_64_bytes() -> None:
    keyboard = rating_keyboard(INTERACTION)
    buttons = keyboard.inline_keyboard[0]
    assert [b.text for b in buttons] == ["👍", "👎", "✍️ Correct"]
    assert all(len(str(b.callback_data).encode()) <= 64 for b in buttons)
    assert [parse_press(b.callback_data) for b in buttons] == [
        Press(INTERACTION, "up"),
        Press(INTERACTION, "down"),
        Press(INTERACTION, "correct"),
    ]
    assert [Press(INTERACTION, "up").value, Press(INTERACTION, "down").value] == [1, -1]


@pytest.mark.parametrize(
    "data",
    [
        None,
        "",
        "garbage",
        "rate:",
        f"rate:{INTERACTION}",
        f"rate:{INTERACTION}:sideways",
        f"fix:{INTERACTION}:up",
        "rate:XYZ:up",
        f"rate:{INTERACTION}:up:extra",
        "rate:'; DROP TABLE interactions;--:up",
        42,
    ],
)
def test_malformed_data_is_not_a_press(data: object) -> None:
    assert parse_press(data) is None
