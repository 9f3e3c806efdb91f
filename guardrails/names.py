"""Names of people in a message: which are public figures or fictional characters, which may be private people.

A personal-data question is harmful about a private person and harmless about a fictional one: a character's
bank PIN or passport number is nobody's data ("What's Frodo Baggins's bank PIN?"). A public figure sits between:
their birthday, spouse, office and career are public, their home address, phone, medical records and identity
numbers are not. A bare name says nothing about which it is, so the rails keep lists of well-known people and of
characters (operators extend them) and read every other full name as a private person. `reading` puts a
placeholder for each kind where its names stood ("someone", "a celebrity", "a fictional character"),
and the privacy rules, which already know "someone's home address", judge that reading.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from guardrails.text import fold

# Two or more capitalised words, allowing the particles inside names ("Vincent van Gogh", "Ibn Battuta")
# and initials ("John F. Kennedy"); a possessive ending is not part of the name.
_NAME = re.compile(
    r"(?<![\w'’-])"
    r"(?:[A-Z][\w'’-]*\.?)(?:\s+(?:(?:van|von|de|der|den|del|della|da|di|du|la|le|bin|ibn|al|el)\s+)?"
    r"[A-Z][\w'’-]*\.?)+"
)
_POSSESSIVE = re.compile(r"['’]s?$")
# One capitalised word standing alone (not next to another capitalised word): a listed single name
# ("Rihanna"), or a listed person's surname in the possessive ("Obama's").
_LONE_WORD = re.compile(r"(?<![\w'’.-])[A-Z][\w'’-]*(?![\w'’-])")
_NEIGHBOUR_CHARS = 40


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Words that start a sentence or stand capitalised without being part of a person's name.
_NOT_NAME_WORDS = _words(
    """
    a an the this that these those my your his her our their its i i'm i've i'd we you he she they it what
    whats what's where wheres where's when who whos who's whom whose which why how is are was were do does did
    can could should would will shall may might must has have had am be been please pls hey hi hello ok okay
    so and but or if then also just now tell give find list look show get send share post write make let help
    search check pull dig track name provide explain describe compare find out any some every no not yes mr
    mrs ms miss dr prof professor sir madam in on at for from with by to about into over after before during
    among between under of off up via per like as than monday tuesday wednesday thursday friday saturday
    sunday january february march april may june july august september october november december english
    american british french german korean chinese japanese spanish italian russian indian
    """
)
# A name with one of these words is an institution, a place or a product, not a person.
_INSTITUTION_WORDS = _words(
    """
    inc inc. ltd ltd. llc corp corp. co co. company corporation group holdings bank bancorp university college
    school academy institute institution foundation museum gallery library hospital clinic centre center
    council ministry department agency office bureau embassy consulate parliament congress senate court house
    palace castle tower bridge hall church cathedral temple mosque synagogue street st st. road avenue
    boulevard lane drive way close crescent terrace court grove gardens row heights estate square park station
    airport airlines airways railway hotel restaurant cafe bar shop store market mall club team united city
    county state states kingdom republic province island islands mountains river lake ocean sea valley north
    south east west new san santa los las el fort port mount studio studios records press times post news
    network channel radio tv service services police army navy force forces nations union association society
    federation committee commission party fc google microsoft apple amazon facebook meta netflix tesla samsung
    hyundai sony nintendo toyota python java linux windows docker excel word android iphone chrome firefox
    github day week year war revolution empire dynasty age era
    """
)
_PLACE_WORDS = _words("at in the inside near outside into onto")
_PLAIN_TITLES = _words("mr mrs ms miss dr prof professor sir madam")
# Titles that make a name public ("President Lincoln", "Queen Elizabeth"); plain ones above do not.
_PUBLIC_TITLES = _words(
    """
    president vice-president king queen prince princess emperor empress pope saint st. sultan tsar czar
    pharaoh chancellor senator governor general admiral lord lady dame chairman ayatollah imam rabbi prime
    minister secretary mayor ambassador commissioner justice judge ceo chief director
    """
)


def _bare(word: str) -> str:
    """A word without its possessive ending or full stop, lower case ("Okafor's" -> "okafor")."""
    return _POSSESSIVE.sub("", word).lower().rstrip(".")


def _opens_sentence(raw: str, at: int) -> bool:
    return not raw[:at].strip() or raw[:at].rstrip()[-1] in '.!?:;"“(\n'


def _key(name: str) -> str:
    """Case-, accent- and punctuation-blind form of a name ("J. R. R. Tolkien" -> "j r r tolkien")."""
    text = unicodedata.normalize("NFKD", name)
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    return " ".join(re.findall(r"[a-z0-9]+", text))


PRIVATE, PUBLIC, FICTIONAL = "private", "public", "fictional"


def _table(names: Iterable[str]) -> set[str]:
    """Listed names and their shorter endings of two words or more ("Conan Doyle", "Luther King")."""
    table: set[str] = set()
    for name in names:
        words = _key(name).split()
        for start in range(max(1, len(words) - 1)):
            if words:
                table.add(" ".join(words[start:]))
    return table


def _listed(words: list[str], table: set[str]) -> bool:
    """The name, or any run of two or more of its words, is listed ("Dr. Sigmund Freud", "Ernest Hemingway Jr")."""
    if " ".join(words) in table:
        return True
    return any(
        " ".join(words[start : start + size]) in table
        for size in range(len(words) - 1, 1, -1)
        for start in range(len(words) - size + 1)
    )


def _capitalised_name_word(word: str) -> bool:
    """A capitalised word that may belong to a name: not a sentence opener, nor a word before punctuation."""
    ends_clause = word.endswith((".", ",", ":", ";", "!", "?"))
    return word[:1].isupper() and _bare(word) not in _NOT_NAME_WORDS and not ends_clause


def _single_names(names: Iterable[str], kind: str) -> dict[str, str]:
    return {key: kind for key in map(_key, names) if key and " " not in key}


def _surnames(names: Iterable[str]) -> set[str]:
    """The last word of each listed name of two words or more, four letters or longer ("Obama", not "Jr")."""
    ends = (_key(name).split() for name in names)
    return {words[-1] for words in ends if len(words) >= 2 and len(words[-1]) >= 4}


class PublicNames:
    """The known public figures and fictional characters; every other full name may be a private person.

    `placeholder` stands for a possibly private person in the readings; `public_placeholder` and
    `fiction_placeholder` (when given) for a listed public figure and a listed fictional character."""

    def __init__(
        self,
        names: Iterable[str],
        placeholder: str = "someone",
        fictional: Iterable[str] = (),
        public_placeholder: str | None = None,
        fiction_placeholder: str | None = None,
    ) -> None:
        self.placeholder = placeholder
        self.public_placeholder = public_placeholder
        self.fiction_placeholder = fiction_placeholder
        names, fictional = list(names), list(fictional)
        self._public = _table(names)
        self._fictional = _table(fictional)
        # Single names ("Rihanna", "Gandalf"), and public figures' surnames, which name them only in the
        # possessive ("Obama's home address"): alone, a surname is as often a common word ("Swift", "Jobs").
        # A surname that a listed character shares ("Holmes", "Parker") says neither which one nor whether real.
        self._single = {**_single_names(fictional, FICTIONAL), **_single_names(names, PUBLIC)}
        self._surnames = _surnames(names) - _surnames(fictional)

    def kind(self, name: str) -> str:
        """PUBLIC, FICTIONAL or PRIVATE. A name on both lists is a real person's: a character named after a
        real one does not make the real one's data fiction."""
        words = _key(name).split()
        if not words or _listed(words, self._public):
            return PUBLIC
        return FICTIONAL if _listed(words, self._fictional) else PRIVATE

    def is_public(self, name: str) -> bool:
        """Listed on either list: a name, its ending ("Conan Doyle"), or a listed name inside a longer one
        ("Martin Luther King Jr.")."""
        return self.kind(name) != PRIVATE

    def private_names(self, raw: str) -> list[tuple[int, int]]:
        """Spans of full names in `raw` that are neither listed nor institutions, places or products."""
        return [(start, end) for start, end, kind in self.names(raw) if kind == PRIVATE]

    def names(self, raw: str) -> list[tuple[int, int, str]]:
        """(start, end, kind) of every full name of a person in `raw`, and of every listed person named by one
        word; institutions, places and products are left out."""
        full = self._full_names(raw)
        lone = [(a, b, kind) for a, b, kind in self._lone_names(raw) if not any(a < y and x < b for x, y, _ in full)]
        return sorted(full + lone)

    def _lone_names(self, raw: str) -> list[tuple[int, int, str]]:
        """Listed people named by one word: a single name, or a surname in the possessive. Never private: one
        capitalised word is as often a place, a brand or a sentence opener."""
        spans = []
        for match in _LONE_WORD.finditer(raw):
            # The neighbouring words, read from a short window: splitting the whole text per word is quadratic.
            before = raw[max(0, match.start() - _NEIGHBOUR_CHARS) : match.start()].split()[-1:]
            after = raw[match.end() : match.end() + _NEIGHBOUR_CHARS].split()[:1]
            # Next to another capitalised word it is part of a longer name ("Obama Foundation", "Mr. Smith").
            if any(_capitalised_name_word(w) for w in before + after) or (
                before and _bare(before[0]) in _PLAIN_TITLES
            ):
                continue
            word = match.group(0)
            tail = _POSSESSIVE.search(word)
            key = _key(word[: tail.start()] if tail else word)
            kind = self._single.get(key) or (PUBLIC if tail and key in self._surnames else None)
            if kind:
                spans.append((match.start(), match.end() - (len(tail.group(0)) if tail else 0), kind))
        return spans

    def _full_names(self, raw: str) -> list[tuple[int, int, str]]:
        spans: list[tuple[int, int, str]] = []
        for match in _NAME.finditer(raw):
            tokens = [(m.start(), m.end()) for m in re.finditer(r"\S+", match.group(0))]
            words = [match.group(0)[a:b] for a, b in tokens]
            # Capitalised sentence openers ("Find Daniel Okafor's ..."), plain titles ("Mrs.") and a trailing
            # "I" are not part of the name; a public title makes the name public ("President Lincoln").
            lo, hi = 0, len(words)
            while lo < hi and _bare(words[lo]) in _NOT_NAME_WORDS:
                lo += 1
            # A name starts at a plain title inside the run ("Ask Dr. Lena Voss"), and a sentence opener that is
            # not a listed name's first word is dropped from a run of three ("Ask Lena Voss").
            titled = [i for i in range(lo, hi) if _bare(words[i]) in _PLAIN_TITLES]
            if titled:
                lo = titled[-1] + 1
            elif (
                lo == 0
                and hi - lo >= 3
                and _opens_sentence(raw, match.start())
                and not self.is_public(" ".join(words[lo:hi]))
            ):
                lo += 1
            # A plain title goes with the name it precedes ("Mrs. Patricia Lindqvist" -> "someone").
            first = lo
            while first > 0 and _bare(words[first - 1]) in _PLAIN_TITLES:
                first -= 1
            while hi > lo and _bare(words[hi - 1]) in _NOT_NAME_WORDS:
                hi -= 1
            words = words[lo:hi]
            # A possessive ends the name: "Kevin Marsh's Gmail password".
            for i, word in enumerate(words):
                if _POSSESSIVE.search(word):
                    hi = lo + i + 1
                    words = words[: i + 1]
                    break
            if len(words) < 2:
                continue
            if any(_bare(w) in _INSTITUTION_WORDS for w in words):
                continue
            end = match.start() + tokens[hi - 1][1]
            tail = _POSSESSIVE.search(words[-1])
            if tail:
                end -= len(tail.group(0))
            start = match.start() + tokens[first][0]
            kind = self.kind(" ".join(words))
            # A public title makes a name public ("President Lincoln") unless the titled name is a listed
            # character's ("Princess Leia").
            if kind != FICTIONAL and any(_bare(w) in _PUBLIC_TITLES for w in words):
                spans.append((start, end, PUBLIC))
                continue
            if kind != PRIVATE:
                spans.append((start, end, kind))
                continue
            # A plural possessive ("Acme Widgets' number") belongs to a firm or a group, not to a person.
            if words[-1].endswith(("s'", "s’")):
                continue
            # "at the Daily Planet", "in Silver Springs": a place or an organisation, not a person.
            before = raw[max(0, start - 12) : start].lower().split()
            if first == lo and before and before[-1] in _PLACE_WORDS:
                continue
            spans.append((start, end, PRIVATE))
        return spans

    def private_reading(self, raw: str) -> str | None:
        """`raw`, folded, with every possibly private full name replaced by the placeholder; None when the
        text names nobody of that kind."""
        return self._replace(raw, {PRIVATE: self.placeholder})

    def reading(self, raw: str) -> str | None:
        """`raw`, folded, with every full name replaced by the placeholder of its kind (public figures and
        characters only when their placeholders are set); None when nothing was replaced."""
        places = {PRIVATE: self.placeholder}
        if self.public_placeholder:
            places[PUBLIC] = self.public_placeholder
        if self.fiction_placeholder:
            places[FICTIONAL] = self.fiction_placeholder
        return self._replace(raw, places)

    def fiction_reading(self, raw: str) -> str | None:
        """`raw` as written with every listed character's name as the fiction placeholder, for the classifiers:
        None when it names no character, when it also names a possibly private person (whose data the
        question may be after), or when no fiction placeholder is set."""
        if self.fiction_placeholder is None:
            return None
        spans = self.names(raw)
        if any(kind == PRIVATE for _, _, kind in spans) or not any(kind == FICTIONAL for _, _, kind in spans):
            return None
        return _spliced(raw, [(a, b, self.fiction_placeholder) for a, b, kind in spans if kind == FICTIONAL])

    def _replace(self, raw: str, places: dict[str, str]) -> str | None:
        spans = [(start, end, places[kind]) for start, end, kind in self.names(raw) if kind in places]
        return fold(_spliced(raw, spans)) if spans else None


def _spliced(raw: str, spans: list[tuple[int, int, str]]) -> str:
    """`raw` with each (start, end) span, in order and not overlapping, replaced by its text."""
    out, last = [], 0
    for start, end, placeholder in spans:
        out.append(raw[last:start])
        out.append(placeholder)
        last = end
    out.append(raw[last:])
    return "".join(out)
