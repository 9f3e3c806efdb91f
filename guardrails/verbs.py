"""`<<verb:...>>` in policy patterns: verbs written once and matched in every form, Korean or English.

`<<verb:때리|찌르>>` is read by `guardrails.korean` (endings fuse into a Korean stem: 때려, 찔렀),
`<<verb:kill|beat up>>` by `guardrails.english` (killed, beating up). A stem is Korean when it holds Hangul.
"""

from __future__ import annotations

import re

from guardrails import english, korean

VERB = re.compile(r"<<verb:([^<>]+)>>")


class StemError(ValueError):
    """A verb that cannot be conjugated; the message says which and why."""


def forms(stem: str) -> list[str]:
    """Every form of one Korean stem or English verb."""
    try:
        return korean.forms(stem) if korean.HANGUL.search(stem) else english.forms(stem)
    except ValueError as exc:
        raise StemError(str(exc)) from None


def verb_pattern(stems: str) -> str:
    """`때리|stab` -> a non-capturing group matching any form of any of the verbs."""
    pieces = []
    for stem in (s.strip() for s in stems.split("|")):
        found = forms(stem)
        # The forms share the stem but its end (a Korean stem's last syllable or two, an English verb's last
        # letters), so that part is written once.
        shared = _common_start(found)
        if len(found) == 1 or not shared:
            pieces += found
        else:
            pieces.append(shared + "(?:" + "|".join(form[len(shared):] for form in found) + ")")
    return "(?:" + "|".join(pieces) + ")"


def _common_start(words: list[str]) -> str:
    shortest = min(words, key=len)
    for at, ch in enumerate(shortest):
        if any(word[at] != ch for word in words):
            return shortest[:at]
    return shortest


def expand_verbs(pattern: str) -> str:
    """Every `<<verb:...>>` in a pattern replaced by its forms."""
    return VERB.sub(lambda match: verb_pattern(match.group(1)), pattern)
