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
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from re import _casefix as sre_casefix  # type: ignore[attr-defined]
from re import _constants as sre  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

from guardrails.korean import HANGUL, HANGUL_RANGES


def _case_classes() -> dict[int, int]:
    """Case-insensitive `re` also pairs letters that str.lower() leaves apart (i and dotless ı, s and long ſ,
    the Greek final sigma...): map each such letter to one member of its class, leaving out the letters that
    are their class's own representative. (İ is handled apart: str.lower() makes two characters of it, `re`
    one.)"""
    table: dict[int, int] = {}
    for low, extras in getattr(sre_casefix, "_EXTRA_CASES", {}).items():
        members = (low, *extras)
        for member in members:
            if member != min(members):
                table[member] = min(members)
    return table


_FOLD_EXTRA = _case_classes()
# Looked for in the lower-cased text: most texts have none of these letters, and a substitution that only
# visits them is much faster on a long text than str.translate, which looks up every character.
_SPECIAL = re.compile("[" + "".join(re.escape(chr(c)) for c in sorted(_FOLD_EXTRA)) + "]")

Literals = frozenset[str]

# A text this long or longer is checked against every clause of a pattern's pre-check; a shorter one only
# against the first, as running a pattern over a short text costs less than looking up more words in it.
LONG_TEXT = 256
# At most this many clauses are looked up, the most selective first.
MAX_CLAUSES = 4
# A bounded repeated group may divide a text between its repeats in at most this many ways.
_MAX_DIVISIONS = 10_000


def _fold_letter(match: re.Match[str]) -> str:
    return chr(_FOLD_EXTRA[ord(match.group())])


def prefilter_text(text: str) -> str:
    """The form literal sets are looked up in: lower case, with the extra case pairs of `re` folded. It has
    the same length as `text`, so positions in one are positions in the other."""
    if text.isascii():
        return text.lower()
    if "\u0130" in text:
        text = text.replace("\u0130", "i")
    lowered = text.lower()
    if _SPECIAL.search(lowered) is None:
        return lowered
    return _SPECIAL.sub(_fold_letter, lowered)


def required_literals(pattern: str, flags: int = re.IGNORECASE) -> Literals | None:
    """Strings, at least one of which is in any text the pattern matches; None if unknown. Under
    IGNORECASE (given or inline) they are in `prefilter_text` form, to be looked up in a text of that form."""
    clauses = required_clauses(pattern, flags)
    return clauses[0] if clauses else None


def required_clauses(pattern: str, flags: int = re.IGNORECASE) -> list[Literals]:
    """Every requirement the pattern's parts make, most selective first: a text the pattern matches holds
    at least one word of each. `\\b(?:why|how) (?:is|was) (?:the holocaust|a genocide)` gives
    [{"the holocaust", "a genocide"}, {"why", "how"}, ...]: a text can have "how" and still be ruled out."""
    try:
        parsed = sre_parse.parse(pattern, flags)
    except re.error:
        return []
    found = _sequence(list(parsed), bool(parsed.state.flags & re.IGNORECASE))
    return sorted(set(found), key=_rank, reverse=True)


def _rank(words: Literals) -> tuple[int, int]:
    """How selective a requirement is: longer shortest word first (in UTF-8 bytes, so a Hangul syllable
    counts as rarer than a Latin letter), then fewer words to look for."""
    return (min(min(len(w.encode("utf-8")) for w in words), 6), -len(words))


def leading_literals(pattern: str, flags: int = re.IGNORECASE) -> Literals | None:
    """Strings one of which every match starts with (after zero-width assertions such as `\\b`), in
    `prefilter_text` form under IGNORECASE; None when some match may start otherwise. `\\b(?:kill|murder) `
    gives {"kill", "murder"}: such a pattern need only be tried where one of them stands. The empty string
    stands for the start of the text (a `^` branch)."""
    try:
        parsed = sre_parse.parse(pattern, flags)
    except re.error:
        return None
    if parsed.state.flags & re.MULTILINE:
        return None
    words = _leading(list(parsed), bool(parsed.state.flags & re.IGNORECASE))
    return frozenset(words) if words else None


def _leading(items: list[tuple[Any, Any]], fold: bool) -> set[str] | None:
    start = 0
    while start < len(items) and items[start][0] is sre.AT:
        if items[start][1] in (sre.AT_BEGINNING, sre.AT_BEGINNING_STRING):
            return {""}
        start += 1
    if start == len(items):
        return None
    op, av = items[start]
    if op is sre.LITERAL:
        end = start
        while end < len(items) and items[end][0] is sre.LITERAL:
            end += 1
        word = "".join(chr(av) for _op, av in items[start:end])
        return {prefilter_text(word) if fold else word}
    if op is sre.IN and all(kind is sre.LITERAL for kind, _code in av):
        # A small set of characters ("[.!?]"), each a word of one character.
        return {prefilter_text(chr(code)) if fold else chr(code) for _kind, code in av}
    if op is sre.SUBPATTERN:
        _group, add_flags, del_flags, body = av
        return None if add_flags or del_flags else _leading(list(body), fold)
    if op is sre.BRANCH:
        words: set[str] = set()
        for branch in av[1]:
            found = _leading(list(branch), fold)
            if not found:
                return None
            words |= found
        return words
    if op in (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT) and av[0] >= 1:
        return _leading(list(av[2]), fold)
    return None


def _best(clauses: list[Literals]) -> Literals | None:
    return max(clauses, key=_rank) if clauses else None


def _sequence(items: list[tuple[Any, Any]], fold: bool) -> list[Literals]:
    """Every item of a sequence must match, so the requirements of all its items hold together."""
    clauses: list[Literals] = []
    run: list[str] = []

    def end_run() -> None:
        if run:
            word = "".join(run)
            clauses.append(frozenset({prefilter_text(word) if fold else word}))
            run.clear()

    for op, av in items:
        if op is sre.LITERAL:
            run.append(chr(av))
            continue
        end_run()
        clauses.extend(_item(op, av, fold))
    end_run()
    return clauses


def _item(op: Any, av: Any, fold: bool) -> list[Literals]:
    if op is sre.SUBPATTERN:
        _group, add_flags, del_flags, body = av
        if (add_flags | del_flags) & re.IGNORECASE:
            return []  # a local (?i:...) or (?-i:...): not worth the bookkeeping
        return _sequence(list(body), fold)
    if op is sre.BRANCH:
        # One of the branches matches: a word from the best requirement of each, together, is needed.
        union: set[str] = set()
        for branch in av[1]:
            best = _best(_sequence(list(branch), fold))
            if best is None:
                return []
            union |= best
        return [frozenset(union)]
    if op in (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT) and av[0] >= 1:
        return _sequence(list(av[2]), fold)
    if op is sre.ATOMIC_GROUP:
        return _sequence(list(av), fold)
    return []


def needs_hangul(pattern: str, flags: int = re.IGNORECASE) -> bool:
    r"""Whether every match of the pattern holds a Hangul letter, consumed or looked ahead at: such a pattern
    (a Korean rule, also its English words that must be followed by Korean, `guns?(?=\s?[가-힣])`) cannot
    match a text without Hangul, which is most texts."""
    try:
        parsed = sre_parse.parse(pattern, flags)
    except re.error:
        return False
    return _sequence_needs_hangul(list(parsed))


def _sequence_needs_hangul(items: list[tuple[Any, Any]]) -> bool:
    return any(_item_needs_hangul(op, av) for op, av in items)


def _item_needs_hangul(op: Any, av: Any) -> bool:
    if op is sre.LITERAL:
        return _is_hangul(av, av)
    if op is sre.IN:
        # A class of Hangul only: every member a Hangul letter or range, nothing negated or shared with others.
        members = [(a, a) if o is sre.LITERAL else a for o, a in av if o in (sre.LITERAL, sre.RANGE)]
        return len(members) == len(av) and all(_is_hangul(lo, hi) for lo, hi in members)
    if op is sre.SUBPATTERN:
        return _sequence_needs_hangul(list(av[3]))
    if op is sre.BRANCH:
        return all(_sequence_needs_hangul(list(branch)) for branch in av[1])
    if op in (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT) and av[0] >= 1:
        return _sequence_needs_hangul(list(av[2]))
    if op is sre.ATOMIC_GROUP:
        return _sequence_needs_hangul(list(av))
    if op is sre.ASSERT:  # a lookahead or lookbehind that must match: its letters must be in the text
        return _sequence_needs_hangul(list(av[1]))
    return False


def _is_hangul(lo: int, hi: int) -> bool:
    return any(first <= lo and hi <= last for first, last in HANGUL_RANGES)


def ambiguous_repeat(pattern: str, flags: int = re.IGNORECASE) -> bool:
    """Whether a repeated group can split one run of text between its repeats in many ways, as
    `(?:\\S+\\s*){0,4}x` can: with `\\s*` empty, four `\\S+` divide a word in hundreds of ways, and on a long text
    with no `x` where it is needed, `re` tries them all (seconds to hours). A group whose every repeat must
    match a separator the run cannot, like `(?:\\S{1,40}\\s+){0,4}`, divides a text in one way only."""
    try:
        parsed = sre_parse.parse(pattern, flags)
    except re.error:
        return False
    return _has_ambiguous_repeat(parsed)


def _has_ambiguous_repeat(items: Any) -> bool:
    for op, av in items:
        if op in (sre.MAX_REPEAT, sre.MIN_REPEAT) and av[1] > 1 and _splits_a_run(av[2], av[1]):
            return True
        if any(_has_ambiguous_repeat(child) for child in _children(op, av)):
            return True
    return False


def _children(op: Any, av: Any) -> list[Any]:
    """The sub-patterns of one parsed item that backtracking can re-enter. Possessive repeats and atomic
    groups never give back what they took, so they are left out."""
    if op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
        return [av[2]]
    if op is sre.SUBPATTERN:
        return [av[3]]
    if op is sre.BRANCH:
        return list(av[1])
    if op in (sre.ASSERT, sre.ASSERT_NOT):
        return [av[1]]
    return []


def _splits_a_run(body: Any, repeats: int) -> bool:
    """A repeated body that may be nothing but a run of varying length (everything else in it can match
    empty), repeated often enough that the ways of dividing a text between its repeats explode. A run of
    fixed length (`[0-9a-f]{2}`) divides a text in one way; `(?:[ .-]?\\d{2,4}){2,4}` in at most 3^4."""
    for i, (op, av) in enumerate(body.data):
        if op not in (sre.MAX_REPEAT, sre.MIN_REPEAT) or av[0] == av[1]:
            continue
        rest = sre_parse.SubPattern(body.state, [item for j, item in enumerate(body.data) if j != i])
        if rest.getwidth()[0] > 0:
            continue
        if sre.MAXREPEAT in (av[1], repeats) or (av[1] - av[0] + 1) ** min(repeats, 12) > _MAX_DIVISIONS:
            return True
    return False


# A long text's pre-check first compares the first GRAM characters of a requirement's words with those of the
# text (one set operation for a requirement of a hundred words) and searches only for the words that pass.
GRAM = 4


@dataclass(frozen=True)
class _Clause:
    """One requirement, arranged for a long text: its words by their first GRAM characters, and those
    shorter than that."""

    by_gram: dict[str, tuple[str, ...]]
    grams: frozenset[str]
    short: tuple[str, ...]

    @classmethod
    def of(cls, words: Literals) -> _Clause:
        by_gram: dict[str, list[str]] = {}
        for word in words:
            if len(word) >= GRAM:
                by_gram.setdefault(word[:GRAM], []).append(word)
        short = tuple(word for word in words if len(word) < GRAM)
        return cls({k: tuple(v) for k, v in by_gram.items()}, frozenset(by_gram), short)


class _TextIndex:
    """What one long text holds, found on first use: its GRAM-character pieces, and where words stand.
    Many patterns look up the same words ("how", "kill") in the same text; the rails read one text with all
    of them before the next."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.grams = {text[at : at + GRAM] for at in range(len(text) - GRAM + 1)}
        self.hangul = HANGUL.search(text) is not None
        self._positions: dict[str, list[int]] = {}
        self._present: dict[str, bool] = {}

    def has(self, word: str) -> bool:
        found = self._present.get(word)
        if found is None:
            found = self._present[word] = self.text.find(word) >= 0
        return found

    def holds(self, clause: _Clause) -> bool:
        """Whether the text has a word of the requirement."""
        if any(self.has(word) for word in clause.short):
            return True
        return any(self.has(word) for gram in self.grams.intersection(clause.grams) for word in clause.by_gram[gram])

    def positions(self, word: str) -> list[int]:
        """Where `word` starts in the text; the empty word stands for the start of the text."""
        if not word:
            return [0]
        found = self._positions.get(word)
        if found is None:
            found, at = [], self.text.find(word)
            while at >= 0:
                found.append(at)
                at = self.text.find(word, at + 1)
            self._positions[word] = found
            self._present[word] = bool(found)
        return found


# Indexes of the last few long texts, per thread: the rails read a message in a few forms (as written,
# decoded...), and some callers fold the same text again, so the cache is keyed by the text itself.
_RECENT = threading.local()
RECENT_TEXTS = 8


def _index(text: str) -> _TextIndex:
    recent: dict[str, _TextIndex] | None = getattr(_RECENT, "indexes", None)
    if recent is None:
        recent = _RECENT.indexes = {}
    index = recent.get(text)
    if index is None:
        if len(recent) >= RECENT_TEXTS:
            del recent[next(iter(recent))]
        index = recent[text] = _TextIndex(text)
    return index


class Matcher:
    """A compiled pattern with its literal pre-check; `search` answers whether it matches. Policy patterns
    are case-insensitive; `ignore_case=False` keeps a pattern (and its pre-check) case-sensitive."""

    def __init__(self, pattern: str, ignore_case: bool = True) -> None:
        self.pattern = pattern
        self.regex = re.compile(pattern, re.IGNORECASE if ignore_case else 0)
        self.ignore_case = bool(self.regex.flags & re.IGNORECASE)
        self.clauses = required_clauses(pattern, self.regex.flags)[:MAX_CLAUSES]
        self.literals = self.clauses[0] if self.clauses else None
        self._long_clauses = [_Clause.of(words) for words in self.clauses]
        # In a long text the pattern is tried only where one of these starts, not at every character.
        self.leading = leading_literals(pattern, self.regex.flags)
        self.hangul = needs_hangul(pattern, self.regex.flags)

    def could_match(
        self, text: str, folded: str | None = None, pos: int = 0, endpos: int | None = None
    ) -> bool:
        """False only when the pattern cannot match (a requirement has none of its words in the text, or the
        pattern needs Hangul and the text has none)."""
        if not self.clauses and not self.hangul:
            return True
        if self.ignore_case:
            text = prefilter_text(text) if folded is None else folded
        end = len(text) if endpos is None else endpos
        if pos == 0 and end == len(text) >= LONG_TEXT:
            index = _index(text)
            if self.hangul and not index.hangul:
                return False
            return all(index.holds(clause) for clause in self._long_clauses)
        if self.hangul and HANGUL.search(text, pos, end) is None:
            return False
        clauses = self.clauses if end - pos >= LONG_TEXT else self.clauses[:1]
        return all(any(text.find(word, pos, end) >= 0 for word in words) for words in clauses)

    def _starts(self, text: str, folded: str | None) -> list[int] | None:
        """Where a match may start in a long text (sorted), or None to let the regex scan it all. Only for a
        pattern that needs a word (`clauses`), so none of its matches is empty."""
        if self.leading is None or not self.clauses or len(text) < LONG_TEXT:
            return None
        if self.ignore_case:
            text = prefilter_text(text) if folded is None else folded
        index = _index(text)
        return sorted({at for word in self.leading for at in index.positions(word)})

    def search(self, text: str, folded: str | None = None, pos: int = 0, endpos: int | None = None) -> bool:
        """Whether the pattern matches in text[pos:endpos]. `folded`: `prefilter_text(text)` when the caller
        already has it (one per text, many rules); it has the same length as `text`."""
        if not self.could_match(text, folded, pos, endpos):
            return False
        end = len(text) if endpos is None else endpos
        starts = self._starts(text, folded) if pos == 0 and end == len(text) else None
        if starts is None:
            return self.regex.search(text, pos, end) is not None
        # `match` at a position still sees the text before it, so `\b` and lookbehinds read as in `search`.
        return any(self.regex.match(text, at) is not None for at in starts)

    def finditer(self, text: str, folded: str | None = None) -> Iterator[re.Match[str]]:
        if not self.could_match(text, folded):
            return
        starts = self._starts(text, folded)
        if starts is None:
            yield from self.regex.finditer(text)
            return
        # As finditer: leftmost matches that do not overlap (none is empty, so each resumes at the last end).
        after = 0
        for at in starts:
            if at >= after and (match := self.regex.match(text, at)) is not None:
                yield match
                after = match.end()


def any_match(matchers: Iterable[Matcher], text: str) -> bool:
    """Whether any of the patterns matches `text`, folded once for all of them."""
    folded = prefilter_text(text)
    return any(matcher.search(text, folded) for matcher in matchers)
