from __future__ import annotations

from itertools import pairwise

import pytest

from knowledge.chunking import chunk_document, count_tokens
from knowledge.loaders import _Builder


def build(sections: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    builder = _Builder()
    for heading, paragraphs in sections.items():
        builder.heading(1, heading)
        for paragraph in paragraphs:
            builder.paragraph(paragraph)
    return builder.build("mem://doc", "Doc", "hash", "md")


SENTENCES = [f"Sentence number {i} talks about topic {i % 3} in some detail." for i in range(30)]
DOC = build(
    {"Alpha": [" ".join(SENTENCES[:12]), " ".join(SENTENCES[12:20])], "Beta": [" ".join(SENTENCES[20:])]}
)


@pytest.mark.parametrize(("budget", "overlap"), [(16, 0), (30, 8), (60, 12), (400, 20)])
def test_chunks_cite_exact_offsets_within_budget_and_section(budget: int, overlap: int) -> None:
    chunks = chunk_document(DOC, budget, overlap)
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert chunk.text == DOC.text[chunk.start : chunk.end]
        assert count_tokens(chunk.text) <= budget
        in_alpha = "Beta" not in chunk.text and all(s not in chunk.text for s in SENTENCES[20:])
        assert chunk.section == ("Alpha" if in_alpha else "Beta")
    covered = " ".join(c.text for c in chunks)
    assert all(sentence in covered for sentence in SENTENCES)


def test_consecutive_chunks_of_a_section_overlap() -> None:
    chunks = [c for c in chunk_document(DOC, 40, 15) if c.section == "Alpha"]
    assert len(chunks) > 2
    for previous, following in pairwise(chunks):
        assert following.start < previous.end  # the next chunk repeats the end of the one before


def test_without_overlap_chunks_do_not_overlap() -> None:
    chunks = chunk_document(DOC, 40, 0)
    for previous, following in pairwise(chunks):
        assert following.start >= previous.end


def test_a_sentence_longer_than_the_budget_is_cut_by_words() -> None:
    long_sentence = " ".join(f"word{i}" for i in range(100))
    chunks = chunk_document(build({"Long": [long_sentence]}), 32, 0)
    assert len(chunks) >= 4
    assert all(count_tokens(c.text) <= 32 for c in chunks)
    assert " ".join(c.text for c in chunks[1:]).endswith("word99")
