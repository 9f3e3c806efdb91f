"""Text preparation shared by the detectors: cleaning, truncation, language, and decoded variants.

Long texts are cut deliberately, not sampled at random: the first three quarters of the budget keep the
head (where a request usually is) and the last quarter the tail (where injected instructions often hide),
joined by a marker line. Everything downstream, the masked text included, sees only that cut text. The
rules read a shorter cut of the same shape (`limits.scan_chars`), because their time grows with length; the
jailbreak rules also read the middle that this shorter cut leaves out (`unread_middle`), in plain text only,
because injected instructions hide in the middle of long pasted documents too.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from guardrails.korean import HANGUL

CUT_MARKER = "\n[…]\n"
# Control characters (category Cc: U+0000-U+001F and U+007F-U+009F) except newline and tab.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# Invisible format characters (category Cf: soft hyphen, zero-width spaces, direction overrides, tag
# characters...) as ranges, so dropping them is one regular-expression pass rather than a Python loop per
# character (a test checks the ranges against unicodedata).
_FORMAT = re.compile(
    "[\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2\u180e\u200b-\u200f\u202a-\u202e"
    "\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U0001343f"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f]"
)
_FLOOD = re.compile(r"(.)\1{3,}", re.DOTALL)
_SENTENCE_END = re.compile(r"(?<=[.!?。？！\n])\s+")
_LATIN = re.compile("[A-Za-z]")
_LEET = str.maketrans(
    {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i"}
)
# Leetspeak puts look-alike digits or symbols between letters (b0mb, h4ck, k!ll, m4k3). Digits only before or
# after letters are versions and names (python3, bm25, sha-256, 135m, fp16), and an @ before a domain is an
# e-mail address: a text with only those gets no leetspeak reading, which would otherwise double the rule time
# of most pasted technical documents.
_LEET_INSIDE = re.compile(r"[a-z](?:[013457$!]+|@(?![a-z0-9-]+\.[a-z]))[a-z]")
_SPACED_LETTERS = re.compile(r"\b(?:[a-z][ .\-_*]){2,}[a-z]\b")
# Spaced letters read before whitespace is collapsed, so a wider gap ("i g n o r e   y o u r") still
# separates words; one or two separators between letters, up to three spaces between words.
_LOOSE_LETTERS = re.compile(r"(?<![a-z])[a-z](?:(?:[.\-_*]|[.\-_*]? {1,3})[a-z]){3,}(?![a-z])")
_SEPARATOR = re.compile(r"[^a-z]+")
_BASE64 = re.compile(r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/_-]{16,}={0,2}(?![A-Za-z0-9+/=_-])")
_HEX = re.compile(r"(?:\b|0x)((?:[0-9a-f]{2}[\s:,]?){8,})", re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")
_MENTIONS_ROT13 = re.compile(r"\brot[- ]?13\b", re.IGNORECASE)
_REVERSED = re.compile(r"\b(?:revers\w*|backwards?|flip\w*|mirror\w*|right[- ]to[- ]left)\b", re.IGNORECASE)
# Reversed text without a word about it shows itself by common English words written backwards.
_REVERSED_WORDS = re.compile(
    r"(?<![a-z])(?:eht|dna|ruoy|uoy|woh|tahw|ekam|erongi|snoitcurtsni|tpmorp|metsys|selur|lla|llet|em|ot|fo)(?![a-z])"
)
# Letters from other scripts that look like Latin ones (Cyrillic and Greek): "іgnоrе" with Cyrillic і, о, е
# reads as "ignore". Only a reading: Russian or Greek text itself is left alone in the plain text.
_HOMOGLYPHS = str.maketrans(
    "аαвсϲԁеεһіιїјкκӏмпηоοσрρԛгѕтτυνԝхχуγ",
    "aabccdeehiiijkklmnnoooppqrsttuvwxxyy",
)
_OTHER_SCRIPT = re.compile("[\u0370-\u03ff\u0400-\u052f]")
# Hangul compatibility jamo, the letters a Korean keyboard types on their own (ㅋㅋ, ㅈㅅ, ㅇㄷ).
_JAMO_RUN = re.compile("[\u3131-\u318e]+")
_JAMO = re.compile("[\u3131-\u3163]")
# For reading a word spelled out letter by letter (ㅈㅏㅅㅏㄹ): the keyboard letters in the order that
# Unicode numbers the initial consonants, the vowels and the final consonants of a syllable.
_INITIALS = "ㄱㄲㄴㄷㄸㄹㅁㅂㅃㅅㅆㅇㅈㅉㅊㅋㅌㅍㅎ"
_VOWELS = "ㅏㅐㅑㅒㅓㅔㅕㅖㅗㅘㅙㅚㅛㅜㅝㅞㅟㅠㅡㅢㅣ"
_FINALS = "ㄱㄲㄳㄴㄵㄶㄷㄹㄺㄻㄼㄽㄾㄿㅀㅁㅂㅄㅅㅆㅇㅈㅊㅋㅌㅍㅎ"


def to_text(value: str | bytes) -> str:
    """Any input as a str: bytes decoded as UTF-8 with bad sequences replaced, lone surrogates replaced."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    try:
        value.encode("utf-8")  # the common case: nothing to replace, no copy kept
    except UnicodeEncodeError:
        return value.encode("utf-8", errors="replace").decode("utf-8")
    return value


def cut(text: str, max_chars: int) -> tuple[str, bool]:
    """Keep head and tail of a text longer than `max_chars` (see the module docstring)."""
    if len(text) <= max_chars:
        return text, False
    head, tail = _head_tail(max_chars)
    return text[:head] + CUT_MARKER + text[-tail:], True


def unread_middle(text: str, max_chars: int, margin: int = 200) -> str:
    """What `cut(text, max_chars)` leaves out, widened by `margin` characters either side so a sentence
    across the border is read whole; "" when nothing is left out. Instructions hidden halfway through a long
    pasted document are here."""
    if len(text) <= max_chars:
        return ""
    head, tail = _head_tail(max_chars)
    return text[max(0, head - margin) : len(text) - tail + margin]


def _head_tail(max_chars: int) -> tuple[int, int]:
    tail = max_chars // 4
    return max_chars - tail - len(CUT_MARKER), tail


def gist(text: str, max_chars: int) -> str:
    """What the embedder reads: character floods cut to three ("!!!!!!!" -> "!!!"), sentences that repeat
    an earlier one dropped, and, when that is still longer than `max_chars`, its head and its last
    sentences, half and half: a long message asks either at its start ("summarise this:") or at its end,
    after the background. A megabyte of one emoji or one pasted line then costs the model a few tokens
    rather than its whole window, and says the same."""
    sentences = _distinct_sentences(text, max_chars * 8)
    whole = " ".join(sentences)
    if len(whole) <= max_chars:
        return whole
    budget = max_chars // 2
    tail: list[str] = []
    size = 0
    for sentence in reversed(sentences):
        if size + len(sentence) + 1 > budget:
            break
        tail.insert(0, sentence)
        size += len(sentence) + 1
    end = " ".join(tail) if tail else whole[-budget:]
    return whole[: max_chars - len(end) - 1] + " " + end


def _distinct_sentences(text: str, window: int) -> list[str]:
    """The sentences of the first and the last `window` characters, floods cut, repeats dropped; a
    sentence cut off at a window's edge is left out."""
    parts = [text] if len(text) <= 2 * window else [text[:window], text[-window:]]
    seen: set[str] = set()
    kept: list[str] = []
    for i, part in enumerate(parts):
        sentences = _SENTENCE_END.split(_FLOOD.sub(r"\1\1\1", part))
        if len(parts) > 1 and len(sentences) > 1:
            sentences = sentences[1:] if i else sentences[:-1]
        for sentence in sentences:
            key = sentence.strip().lower()
            if key and key in seen:
                continue
            seen.add(key)
            kept.append(sentence)
    return kept


def clean(value: str | bytes, max_chars: int) -> tuple[str, bool]:
    """Cut, then drop control characters (newlines and tabs stay). Returns (text, was_cut). A str is cut
    before anything else reads it, so a megabyte costs no more than `max_chars` here."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    text, was_cut = cut(value, max_chars)
    return _CONTROLS.sub("", to_text(text)), was_cut


def fold(text: str) -> str:
    """The form rules match against: NFKC, no invisible format characters, lower case, single spaces.
    Hangul keyboard letters typed on their own stay as typed: NFKC would turn them into conjoining jamo
    (and join a consonant with the vowel after it), which no pattern written on a keyboard matches."""
    return _WHITESPACE.sub(" ", _normalise(text)).strip()


def _normalise(text: str) -> str:
    text = _FORMAT.sub("", _nfkc(text))
    return text.replace("’", "'").replace("‘", "'").replace("“", '"').replace("”", '"').lower()


def _nfkc(text: str) -> str:
    if text.isascii() or not _JAMO_RUN.search(text):
        return unicodedata.normalize("NFKC", text)
    parts = _JAMO_RUN.split(text)
    runs = _JAMO_RUN.findall(text)
    out = [unicodedata.normalize("NFKC", parts[0])]
    for run, part in zip(runs, parts[1:], strict=True):
        out += [run, unicodedata.normalize("NFKC", part)]
    return "".join(out)


def compose_jamo(text: str) -> str:
    """Keyboard letters spelled one by one joined into syllables: "ㅈㅏㅅㅏㄹ" -> "자살". A consonant
    before a vowel starts a syllable; one after a vowel ends it unless a vowel follows it. Letters that
    make no syllable (ㅋㅋ) stay."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in _INITIALS and i + 1 < n and text[i + 1] in _VOWELS:
            code = 0xAC00 + (_INITIALS.index(ch) * 21 + _VOWELS.index(text[i + 1])) * 28
            i += 2
            ends = i < n and text[i] in _FINALS and not (i + 1 < n and text[i + 1] in _VOWELS)
            if ends:
                code += _FINALS.index(text[i]) + 1
                i += 1
            out.append(chr(code))
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def language(text: str) -> str:
    """'ko' when Hangul makes up at least a third of the letters, else 'en'."""
    if text.isascii():
        return "en"
    hangul = len(HANGUL.findall(text))
    latin = len(_LATIN.findall(text))
    return "ko" if hangul and hangul * 3 >= hangul + latin else "en"


@dataclass(frozen=True)
class Variant:
    """One reading of a text: 'plain', or how it was decoded (homoglyph, leet, jamo, spaced, encoded, rot13,
    reversed)."""

    how: str
    text: str


# Readings in which the rails decoded a hidden payload (or re-spelled a disguised one), as opposed to the text
# as written, its look-alike letters or its quoted pieces joined; payloads decoded from base64, hex, rot13 or
# reversed text first, then the message's own letters joined or re-spelled.
DECODED = ("encoded", "rot13", "reversed", "spaced", "leet")


def decoded_payload(readings: Sequence[Variant]) -> str | None:
    """The payload the rails decoded from a text (the first decoded reading, in DECODED's order), or None."""
    return next((r.text for how in DECODED for r in readings if r.how == how), None)


def variants(raw: str) -> list[Variant]:
    """The folded text plus every decoded reading that differs from it; hidden payloads show up here."""
    folded = fold(raw)
    found = [Variant("plain", folded)]
    seen = {folded}

    def add(how: str, text: str) -> None:
        text = _WHITESPACE.sub(" ", text.lower()).strip()
        if text and text not in seen:
            seen.add(text)
            found.append(Variant(how, text))

    if _OTHER_SCRIPT.search(folded):
        folded = folded.translate(_HOMOGLYPHS)
        add("homoglyph", folded)
    if _LEET_INSIDE.search(folded):
        add("leet", " ".join(_deleet_token(token) for token in folded.split(" ")))
    if _JAMO.search(folded):
        add("jamo", compose_jamo(folded))
    loose, runs = _LOOSE_LETTERS.subn(_join_words, _loose(raw).translate(_HOMOGLYPHS))
    if runs:
        add("spaced", loose)
    add("spaced", _SPACED_LETTERS.sub(_join_letters, folded))
    # "make a b o m b": the article is swallowed by the run, so also read the run without its first letter.
    add("spaced", _SPACED_LETTERS.sub(lambda m: m.group(0)[:2] + _join_letters_text(m.group(0)[2:]), folded))
    # Base64 is case-sensitive, so payloads are decoded from the text before folding.
    decoded = [*_base64_payloads(raw), *_hex_payloads(raw)]
    if decoded:
        add("encoded", " . ".join(decoded))
    if _MENTIONS_ROT13.search(folded):
        add("rot13", codecs.decode(folded, "rot13"))
    if _REVERSED.search(folded) or len(set(_REVERSED_WORDS.findall(folded))) >= 3:
        add("reversed", folded[::-1])
        add("reversed", " ".join(word[::-1] for word in folded.split(" ")))
    return found


def _loose(raw: str) -> str:
    """`fold` without collapsing whitespace (tabs and newlines become spaces), for spaced-out letters."""
    return re.sub(r"[\t\n\r]", " ", _normalise(raw))


def _join_words(match: re.Match[str]) -> str:
    """Letters joined into words: the separator used most between letters joins them, any other (or a
    wider gap) separates words, so "s.y.s.t.e.m p.r.o.m.p.t" and "a b-o-m-b" read "system prompt", "a bomb"."""
    run = match.group(0)
    gaps = _SEPARATOR.findall(run)
    joiner = max(gaps, key=gaps.count)  # ties go to the first, so the reading is the same every run
    letters = _SEPARATOR.split(run)
    words = [letters[0]]
    for gap, letter in zip(gaps, letters[1:], strict=True):
        if gap == joiner:
            words[-1] += letter
        else:
            words.append(letter)
    return " ".join(words)


def _join_letters_text(text: str) -> str:
    return re.sub(r"[ .\-_*]", "", text)


def _join_letters(match: re.Match[str]) -> str:
    return _join_letters_text(match.group(0))


def _deleet_token(token: str) -> str:
    """Only tokens mixing letters with look-alike digits or symbols: "b0mb" is read, "2024" is not."""
    if not any("a" <= ch <= "z" for ch in token):
        return token
    return token.translate(_LEET) if any(ch in "013457@$!" for ch in token.rstrip("!.?,")) else token


def _printable(raw: bytes) -> str | None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    letters = sum(1 for ch in text if ch.isalpha() or ch.isspace())
    return text if len(text) >= 6 and letters >= 0.8 * len(text) else None


def _base64_payloads(text: str) -> list[str]:
    out = []
    for match in _BASE64.finditer(text):
        token = match.group(0).rstrip("=").replace("-", "+").replace("_", "/")
        try:
            raw = base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
        except (binascii.Error, ValueError):
            continue
        decoded = _printable(raw)
        if decoded:
            out.append(decoded)
    return out


def _hex_payloads(text: str) -> list[str]:
    out = []
    for match in _HEX.finditer(text):
        digits = re.sub(r"[\s:,]", "", match.group(1))
        if len(digits) % 2:
            digits = digits[:-1]
        decoded = _printable(bytes.fromhex(digits))
        if decoded:
            out.append(decoded)
    return out
