"""Cut a document into passages by its structure: sections, then paragraphs, then sentences, then words.

A chunk never crosses a section or page boundary, holds at most `chunk_tokens` tokens, and starts with up to
`chunk_overlap` tokens that end the previous chunk of the same section. Its text is exactly
`document.text[start:end]`, so an answer can cite it by offsets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import groupby

from knowledge.loaders import Block, Document

TOKEN = re.compile(r"\w+|[^\w\s]")
SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+")


@dataclass(frozen=True)
class Chunk:
    ordinal: int
    start: int
    end: int
    text: str
    section: str | None
    page: int | None


@dataclass(frozen=True)
class _Unit:
    start: int
    end: int
    tokens: int


def count_tokens(text: str) -> int:
    """Words and punctuation marks: tokenizer-free, close for English and stable for Korean."""
    return len(TOKEN.findall(text))


def chunk_document(document: Document, chunk_tokens: int, chunk_overlap: int) -> list[Chunk]:
    chunks: list[Chunk] = []
    segments = groupby(document.blocks, key=lambda block: (block.section, block.page))
    for (section, page), blocks in segments:
        units = [u for block in blocks for u in _units(document.text, block, chunk_tokens)]
        for start, end in _pack(units, chunk_tokens, chunk_overlap):
            chunks.append(Chunk(len(chunks), start, end, document.text[start:end], section, page))
    return chunks


def _units(text: str, block: Block, budget: int) -> list[_Unit]:
    """Sentences of a block; a sentence over the budget is cut into runs of `budget` tokens."""
    units = []
    cursor = block.start
    bounds = [m.start() for m in SENTENCE_END.finditer(text, block.start, block.end)]
    for stop in [*bounds, block.end]:
        span = text[cursor:stop]
        stripped = span.strip()
        if stripped:
            first = cursor + span.index(stripped[0])
            units.extend(_split_long(text, first, first + len(stripped), budget))
        cursor = stop
    return units


def _split_long(text: str, start: int, end: int, budget: int) -> list[_Unit]:
    tokens = list(TOKEN.finditer(text, start, end))
    if len(tokens) <= budget:
        return [_Unit(start, end, len(tokens))]
    pieces = []
    for i in range(0, len(tokens), budget):
        run = tokens[i : i + budget]
        pieces.append(_Unit(run[0].start(), run[-1].end(), len(run)))
    return pieces


def _pack(units: list[_Unit], budget: int, overlap: int) -> list[tuple[int, int]]:
    """Greedy packing of consecutive units into (start, end) spans under the token budget."""
    spans: list[tuple[int, int]] = []
    first = 0
    while first < len(units):
        last, total = first, units[first].tokens
        while last + 1 < len(units) and total + units[last + 1].tokens <= budget:
            last += 1
            total += units[last].tokens
        spans.append((units[first].start, units[last].end))
        if last + 1 >= len(units):
            break
        next_first, carried = last + 1, 0
        while next_first - 1 > first and carried + units[next_first - 1].tokens <= overlap:
            next_first -= 1
            carried += units[next_first].tokens
        first = next_first
    return spans
