"""A cheap pre-check for policy patterns: the literal words one of which every match must contain.

Python's `re` tries a pattern that starts with `\\b(?:kill|murder|...)` at every position of the text, so
sixty rules over a two-thousand-character message took about 40 ms. Most rules cannot match most texts,
and that is visible from their words alone: `(?:kill|murder) .{0,20} <<person>>` needs "kill" or "murder"
somewhere. `required_literals` reads a pattern's parse tree and returns such a set (None when there is
none, for example for a pattern that starts with an optional part everywhere); `Matcher` looks for those
words with plain substring search, which is fast, and runs the regular expression only when one is there.
The pre-check is a necessary condition, so a rule fires exactly when it did without it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from re import _casefix as sre_casefix  # type: ignore[attr-defined]
from re import _constants as sre  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any


def _case_classes() -> dict[int, int]:
    """Case-insensitive `re` also pairs letters that str.lower() leaves apart (i and dotless ı, s and long ſ,
    the Greek final sigma...): map each such letter to one member of its class. (İ is handled apart: str.lower()
    makes two characters of it, `re` one.)"""
    table: dict[int, int] = {}
    for low, extras in getattr(sre_casefix, "_EXTRA_CASES", {}).items():
        members = (low, *extras)
        for member in members:
            table[member] = min(members)
    return table


_FOLD_EXTRA = _case_classes()
_UPPER_I = {0x130: ord("i")}
# str.translate with a table is slow on long texts; most texts have none of these letters.
_SPECIAL = re.compile("[" + "".join(re.escape(chr(c)) for c in sorted({*_FOLD_EXTRA, *_UPPER_I})) + "]")

Literals = frozenset[str]


def prefilter_text(text: str) -> str:
    """The form literal sets are looked up in: lower case, with the extra case pairs of `re` folded."""
    if text.isascii() or not _SPECIAL.search(text):
        return text.lower()
    return text.translate(_UPPER_I).lower().translate(_FOLD_EXTRA)


def required_literals(pattern: str, flags: int = re.IGNORECASE) -> Literals | None:
    """Strings, at least one of which is in any text the pattern matches; None if unknown. Under
    IGNORECASE (given or inline) they are in `prefilter_text` form, to be looked up in a text of that form."""
    try:
        parsed = sre_parse.parse(pattern, flags)
    except re.error:
        return None
    return _sequence(list(parsed), bool(parsed.state.flags & re.IGNORECASE))


def _better(a: Literals | None, b: Literals | None) -> Literals | None:
    """The more selective of two requirements: longer shortest word first (in UTF-8 bytes, so a Hangul
    syllable counts as rarer than a Latin letter), then fewer words to look for."""
    if a is None:
        return b
    if b is None:
        return a

    def rank(s: Literals) -> tuple[int, int]:
        return (min(min(len(w.encode("utf-8")) for w in s), 4), -len(s))

    return a if rank(a) >= rank(b) else b


def _sequence(items: list[tuple[Any, Any]], fold: bool) -> Literals | None:
    """Every item of a sequence must match, so the best requirement of any one item holds for all."""
    best: Literals | None = None
    run: list[str] = []

    def end_run() -> None:
        nonlocal best
        if run:
            word = "".join(run)
            best = _better(best, frozenset({prefilter_text(word) if fold else word}))
            run.clear()

    for op, av in items:
        if op is sre.LITERAL:
            run.append(chr(av))
            continue
        end_run()
        best = _better(best, _item(op, av, fold))
    end_run()
    return best


def _item(op: Any, av: Any, fold: bool) -> Literals | None:
    if op is sre.SUBPATTERN:
        _group, add_flags, del_flags, body = av
        if (add_flags | del_flags) & re.IGNORECASE:
            return None  # a local (?i:...) or (?-i:...): not worth the bookkeeping
        return _sequence(list(body), fold)
    if op is sre.BRANCH:
        union: set[str] = set()
        for branch in av[1]:
            found = _sequence(list(branch), fold)
            if found is None:
                return None
            union |= found
        return frozenset(union)
    if op in (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT) and av[0] >= 1:
        return _sequence(list(av[2]), fold)
    if op is sre.ATOMIC_GROUP:
        return _sequence(list(av), fold)
    return None


class Matcher:
    """A compiled pattern with its literal pre-check; `search` answers whether it matches. Policy patterns
    are case-insensitive; `ignore_case=False` keeps a pattern (and its pre-check) case-sensitive."""

    def __init__(self, pattern: str, ignore_case: bool = True) -> None:
        self.pattern = pattern
        self.regex = re.compile(pattern, re.IGNORECASE if ignore_case else 0)
        self.ignore_case = bool(self.regex.flags & re.IGNORECASE)
        self.literals = required_literals(pattern, self.regex.flags)

    def could_match(
        self, text: str, folded: str | None = None, pos: int = 0, endpos: int | None = None
    ) -> bool:
        """False only when the pattern cannot match (none of its required words is in the text)."""
        if self.literals is None:
            return True
        if self.ignore_case:
            text = prefilter_text(text) if folded is None else folded
        end = len(text) if endpos is None else endpos
        return any(text.find(word, pos, end) >= 0 for word in self.literals)

    def search(self, text: str, folded: str | None = None, pos: int = 0, endpos: int | None = None) -> bool:
        """Whether the pattern matches in text[pos:endpos]. `folded`: `prefilter_text(text)` when the caller
        already has it (one per text, many rules); it has the same length as `text`."""
        if not self.could_match(text, folded, pos, endpos):
            return False
        end = len(text) if endpos is None else endpos
        return self.regex.search(text, pos, end) is not None

    def finditer(self, text: str, folded: str | None = None) -> Iterator[re.Match[str]]:
        if self.could_match(text, folded):
            yield from self.regex.finditer(text)
