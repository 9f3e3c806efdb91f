"""Telegram text: answers and lists as Bot API HTML, split into messages that fit, and a plain-text fallback.

Everything the bot did not write itself (answers, passages, file names) is escaped, so the only tags in a
message are the few added here. Splitting works on that HTML: it counts only visible characters (in UTF-16
code units, as Telegram does), prefers paragraph, then line, sentence and word boundaries, never cuts inside
a tag, an entity or a character, and closes the tags open at a cut and reopens them in the next message.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from bot.terminal import CitationLike

MAX_MESSAGE_CHARS = 4096
DRAFT_MARK = " …"

_TOKEN = re.compile(r"(<[^<>]*>)|(&(?:#\d+|#x[0-9a-fA-F]+|[a-zA-Z]+);)|([^<&]+)|([<&])")
_TAG_NAME = re.compile(r"</?\s*([a-zA-Z][\w-]*)")
_SENTENCE_END = ".!?…"
# Break classes, best first: paragraph, line, sentence, word.
_BREAKS = ("paragraph", "line", "sentence", "word")


class AnswerLike(Protocol):
    @property
    def text(self) -> str: ...
    @property
    def notes(self) -> Sequence[str]: ...
    @property
    def citations(self) -> Sequence[CitationLike]: ...


def escape(text: str) -> str:
    """Text made safe for parse_mode HTML: only <, > and & are special there."""
    return html.escape(text, quote=False)


def source_name(source: str) -> str:
    """A source as people read it: a file's name rather than the absolute path it was added from."""
    return re.split(r"[/\\]", source.rstrip("/\\"))[-1] or source  # "calculator" stays "calculator"


def markdown_to_html(text: str) -> str:
    """Escape model text and keep its simplest Markdown: ``` blocks, `code` and **bold**."""
    parts = re.split(r"```[^\n`]*\n?(.*?)```", text, flags=re.DOTALL)
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append(f"<pre>{escape(part.strip(chr(10)))}</pre>")
            continue
        chunk = escape(part)
        chunk = re.sub(r"`([^`\n]+)`", r"<code>\1</code>", chunk)
        chunk = re.sub(r"\*\*([^*\n]+)\*\*", r"<b>\1</b>", chunk)
        out.append(chunk)
    return "".join(out)


def render_answer(answer: AnswerLike) -> str:
    """The checked answer, any notes from the rails, and the sources its [n] marks point at."""
    parts = [markdown_to_html(answer.text.strip()) or escape("(no answer)")]
    parts += [f"<i>{escape(note)}</i>" for note in answer.notes]
    if answer.citations:
        lines = [f"[{c.number}] {escape(source_name(c.source))} · {escape(c.location)}" for c in answer.citations]
        parts.append("<b>Sources</b>\n" + "\n".join(lines))
    return "\n\n".join(parts)


def render_draft(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """An answer still being generated, as plain text that fits one message."""
    room = limit - len(DRAFT_MARK)
    draft = text.strip()
    return (draft if len(draft) <= room else draft[: room - 1] + "…") + DRAFT_MARK


@dataclass(frozen=True)
class SourcePassage:
    number: int
    source: str
    location: str
    text: str


def render_passages(passages: Sequence[SourcePassage]) -> str:
    """The passages behind an answer, in full, each under its number and source."""
    blocks = [
        f"<b>[{p.number}] {escape(source_name(p.source))}</b> · {escape(p.location)}\n"
        f"<blockquote>{escape(p.text.strip())}</blockquote>"
        for p in passages
    ]
    return "\n\n".join(blocks)


@dataclass(frozen=True)
class _Unit:
    raw: str
    width: int
    text: str = ""  # the visible character, for text units
    tag: str = ""  # tag name, for tags
    closing: bool = False


def _units(markup: str) -> list[_Unit]:
    units: list[_Unit] = []
    for tag, entity, text, stray in _TOKEN.findall(markup):
        if tag:
            name = _TAG_NAME.match(tag)
            units.append(_Unit(tag, 0, tag=name.group(1).lower() if name else "", closing=tag.startswith("</")))
        elif entity:
            units.append(_Unit(entity, 1, text=html.unescape(entity)))
        else:
            for char in text or stray:
                units.append(_Unit(char, _utf16_width(char), text=char))
    return units


def _utf16_width(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def visible_length(markup: str) -> int:
    """Length of the text Telegram shows for this HTML, in UTF-16 code units (what its limits count)."""
    return sum(u.width for u in _units(markup))


def to_plain(markup: str) -> str:
    """The visible text of bot HTML, for a resend without parse mode."""
    return "".join(u.text for u in _units(markup))


def split_html(markup: str, limit: int = MAX_MESSAGE_CHARS) -> list[str]:
    """Cut HTML into messages of at most `limit` visible characters, each with balanced tags."""
    if limit < 2:
        raise ValueError(f"expected a limit of at least 2 characters, got {limit}")
    units = _units(markup)
    pieces: list[str] = []
    open_tags: list[_Unit] = []
    start = 0
    while start < len(units):
        while start < len(units) and units[start].text.isspace():
            start += 1
        cut = _cut(units, start, limit)
        body = units[start:cut]
        prefix = "".join(u.raw for u in open_tags)
        for unit in body:
            if unit.tag and unit.closing:
                for i in range(len(open_tags) - 1, -1, -1):
                    if open_tags[i].tag == unit.tag:
                        del open_tags[i]
                        break
            elif unit.tag:
                open_tags.append(unit)
        suffix = "".join(f"</{u.tag}>" for u in reversed(open_tags))
        if any(u.text.strip() for u in body):
            pieces.append((prefix + "".join(u.raw for u in body)).rstrip() + suffix)
        start = cut
    return pieces


def _cut(units: list[_Unit], start: int, limit: int) -> int:
    """Where the message that starts at `start` should end: the best boundary that keeps it within `limit`."""
    width = 0
    end = start
    best: dict[str, tuple[int, int]] = {}  # break class -> (index after the break, width before it)
    previous = ""
    while end < len(units) and width + units[end].width <= limit:
        unit = units[end]
        width += unit.width
        end += 1
        if not unit.text:
            continue
        kind = _break_kind(previous, unit.text)
        if kind:
            best[kind] = (end, width)
        previous = unit.text
    if end == len(units):
        return end
    for kind in _BREAKS:
        if kind in best and best[kind][1] >= limit // 2:
            return best[kind][0]
    if best:
        return max(best.values(), key=lambda found: found[1])[0]
    return end


def _break_kind(previous: str, char: str) -> str:
    if char == "\n":
        return "paragraph" if previous == "\n" else "line"
    if char.isspace():
        return "sentence" if previous and previous in _SENTENCE_END else "word"
    return ""
