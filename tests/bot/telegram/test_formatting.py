"""Bot HTML: escaping, rendering, and splitting long texts into messages Telegram accepts.

Every piece is checked with the fake server's parser, which words its errors as Telegram does."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from bot.telegram.formatting import (
    escape,
    markdown_to_html,
    render_answer,
    render_draft,
    source_name,
    split_html,
    to_plain,
    visible_length,
)
from tests.telegram_fake import parse_html, utf16_len


def accepted(piece: str) -> str:
    """The text Telegram shows for `piece` (raises if it would refuse it)."""
    return parse_html(piece)[0]


def paragraphs(count: int, words: int) -> list[str]:
    return [" ".join(f"p{i}w{j}" for j in range(words)) + "." for i in range(count)]


@pytest.mark.parametrize(
    "text",
    [
        "a < b && c > d",
        "<script>alert(1)</script>",
        "&amp; is how you write &",
        "**unclosed bold and `unclosed code",
        "```\nprint('<tag>')\n```",
        "Tom & Jerry's <b>bold</b> claim",
    ],
)
def test_model_text_always_parses_and_shows_as_written(text: str) -> None:
    shown = accepted(markdown_to_html(text))
    for fragment in ("<script>", "a < b && c > d", "&amp; is how", "<b>bold</b>", "print('<tag>')"):
        if fragment in text:
            assert fragment in shown


def test_simple_markdown_becomes_formatting() -> None:
    _, entities = parse_html(markdown_to_html("Run **domainbot chat** or `kb add`:\n```\nkb add docs/\n```"))
    assert [e["type"] for e in entities] == ["bold", "code", "pre"]


@dataclass
class Cited:
    number: int
    source: str
    location: str


@dataclass
class Reply:
    text: str
    citations: list[Cited] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def test_answer_lists_its_sources_by_file_name_and_its_notes() -> None:
    reply = Reply(
        "Two years [1], 84 [2].",
        [Cited(1, "/srv/data/telegram-uploads/warranty.md", "§ Warranty"), Cited(2, "calculator", "computed")],
        ["This looks off-topic <maybe>."],
    )
    shown = accepted(render_answer(reply))
    assert shown.startswith("Two years [1], 84 [2].")
    assert "This looks off-topic <maybe>." in shown
    assert "[1] warranty.md · § Warranty" in shown and "[2] calculator · computed" in shown
    assert "/srv/data" not in shown


@pytest.mark.parametrize(
    ("source", "name"), [("/a/b/c.md", "c.md"), ("calculator", "calculator"), ("C:\\x\\y.txt", "y.txt")]
)
def test_source_name(source: str, name: str) -> None:
    assert source_name(source) == name


def test_short_text_is_one_piece_unchanged() -> None:
    assert split_html("<b>hi</b> there") == ["<b>hi</b> there"]


@pytest.mark.parametrize("limit", [50, 120, 4096])
def test_long_text_splits_at_paragraphs_within_the_limit(limit: int) -> None:
    paras = paragraphs(40, 6)
    markup = "\n\n".join(escape(p) for p in paras)
    pieces = split_html(markup, limit)
    assert all(visible_length(p) <= limit for p in pieces)
    shown = [accepted(p) for p in pieces]
    assert "\n\n".join(shown) == "\n\n".join(paras)
    # Each paragraph (shorter than the limit) lands whole in one message.
    for para in paras:
        assert any(para in s for s in shown)


def test_a_paragraph_longer_than_the_limit_splits_at_sentences_then_words() -> None:
    sentences = [f"Sentence {i} has a few words in it." for i in range(30)]
    pieces = split_html(" ".join(sentences), 100)
    shown = [accepted(p) for p in pieces]
    assert all(s.endswith(".") for s in shown[:-1])
    assert " ".join(shown) == " ".join(sentences)
    words = split_html(" ".join(["word"] * 100), 30)
    assert all(p.replace("word", "").strip() == "" and visible_length(p) <= 30 for p in words)


def test_open_tags_are_closed_at_a_cut_and_reopened_after_it() -> None:
    quote = "<blockquote>" + escape(" ".join(f"line {i} & more" for i in range(60))) + "</blockquote>"
    markup = "<b>[1] guide.md</b>\n" + quote
    pieces = split_html(markup, 100)
    assert len(pieces) > 3
    for piece in pieces:
        parse_html(piece)  # balanced, or the parser raises
        assert visible_length(piece) <= 100
    assert all(p.startswith("<blockquote>") for p in pieces[1:])
    joined = " ".join(accepted(p) for p in pieces).split()
    assert joined == to_plain(markup).split()


def test_limits_count_utf16_units_and_never_split_a_character() -> None:
    text = "😀" * 3000  # each takes two UTF-16 units
    pieces = split_html(text, 4096)
    assert [utf16_len(accepted(p)) for p in pieces] == [4096, 1904]
    assert "".join(accepted(p) for p in pieces) == text
    entity = split_html("&amp;" * 10, 4)
    assert all(p == "&amp;" * 4 or p == "&amp;" * 2 for p in entity)


def test_plain_fallback_and_draft() -> None:
    assert to_plain("<b>x</b> &lt;y&gt; &amp; z") == "x <y> & z"
    draft = render_draft("word " * 2000, limit=100)
    assert len(draft) <= 100 and draft.endswith(" …")
