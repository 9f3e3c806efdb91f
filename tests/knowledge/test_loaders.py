from __future__ import annotations

from pathlib import Path

import pytest

from knowledge.loaders import LoadError, decode_text, expand_paths, parse_document
from tests.fixtures.knowledge import HERE as FIXTURES
from tests.fixtures.knowledge import make_docx, make_pdf

KOREAN = "서울은 대한민국의 수도이며, 한강이 도시를 가로질러 흐른다. 인구는 약 천만 명이다."
ENGLISH = "Plain ASCII text about tea and coffee."


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        (KOREAN, "utf-8"),
        (KOREAN, "utf-8-sig"),
        (KOREAN, "utf-16"),
        (ENGLISH, "utf-16-le"),
        (ENGLISH, "utf-16-be"),
        (KOREAN, "cp949"),
        (KOREAN, "euc-kr"),
        (KOREAN + " 똠방각하 펲", "cp949"),  # syllables only cp949 (not EUC-KR) can encode
    ],
)
def test_decode_text_detects_the_encoding_from_content(text: str, encoding: str) -> None:
    assert decode_text(text.encode(encoding)) == text


def test_korean_legacy_file_is_read_whatever_its_extension_suggests(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(KOREAN.encode("cp949"))
    assert parse_document(path, path.read_bytes(), "h").text == KOREAN


@pytest.mark.parametrize(
    "data",
    [bytes(range(256)) * 20, b"\x00\x01\x02\x03" * 500, b"\x89PNG\r\n\x1a\n" + bytes(range(200)) * 10],
)
def test_binary_content_is_refused(data: bytes) -> None:
    with pytest.raises(LoadError, match="binary"):
        decode_text(data)


def test_markdown_headings_become_sections_and_title() -> None:
    path = FIXTURES / "guide.md"
    doc = parse_document(path, path.read_bytes(), "h")
    assert doc.title == "Tea guide"
    sections = {doc.text[b.start : b.end]: b.section for b in doc.blocks}
    assert sections["Green tea is steeped at 80 degrees for two minutes. It is not oxidised."] == (
        "Tea guide > Green tea"
    )
    assert sections["Black tea"] == "Tea guide > Black tea"


def test_html_drops_scripts_styles_and_comments_and_keeps_headings() -> None:
    path = FIXTURES / "page.html"
    doc = parse_document(path, path.read_bytes(), "h")
    assert doc.title == "Coffee notes"
    for hidden in ("secret", "color", "comment", "javascript"):
        assert hidden not in doc.text
    assert "Espresso is brewed with hot water under nine bars of pressure." in doc.text
    roast = next(b for b in doc.blocks if "Dark roasts" in doc.text[b.start : b.end])
    assert roast.section == "Coffee > Roasting"


def test_pdf_keeps_page_numbers(tmp_path: Path) -> None:
    path = make_pdf(
        tmp_path / "manual.pdf", ["Setup takes five minutes.", "Reset by holding the button."], "Manual"
    )
    doc = parse_document(path, path.read_bytes(), "h")
    assert doc.title == "Manual"
    pages = {doc.text[b.start : b.end]: b.page for b in doc.blocks}
    assert pages == {"Setup takes five minutes.": 1, "Reset by holding the button.": 2}


def test_docx_headings_become_sections(tmp_path: Path) -> None:
    path = make_docx(tmp_path / "report.docx", "Quarterly report", {"Sales": ["Sales grew by 4 percent."]})
    doc = parse_document(path, path.read_bytes(), "h")
    assert doc.title == "Quarterly report"
    body = next(b for b in doc.blocks if doc.text[b.start : b.end] == "Sales grew by 4 percent.")
    assert body.section == "Quarterly report > Sales"


def test_csv_and_jsonl_rows_become_paragraphs(tmp_path: Path) -> None:
    csv_path = tmp_path / "prices.csv"
    csv_path.write_text("item,price\ntea,3\ncoffee,4\n", encoding="utf-8")
    jsonl_path = tmp_path / "faq.jsonl"
    jsonl_path.write_text('{"text": "Opening hours are 9 to 5."}\n{"q": "Parking?", "a": "Free"}\n', "utf-8")
    assert (
        parse_document(csv_path, csv_path.read_bytes(), "h").text
        == "item: tea; price: 3\n\nitem: coffee; price: 4"
    )
    assert parse_document(jsonl_path, jsonl_path.read_bytes(), "h").text == (
        "Opening hours are 9 to 5.\n\nq: Parking?; a: Free"
    )


def test_expand_paths_handles_folders_globs_and_misses(tmp_path: Path) -> None:
    (tmp_path / "docs" / "deep").mkdir(parents=True)
    for name in ("docs/a.md", "docs/deep/b.txt", "docs/image.png", "c.txt"):
        (tmp_path / name).write_text("x", encoding="utf-8")
    files, misses = expand_paths(
        [tmp_path / "docs", str(tmp_path / "*.txt"), str(tmp_path / "nothing*.md"), tmp_path / "gone.txt"]
    )
    names = [p.name for p in files]
    assert names == ["a.md", "b.txt", "c.txt", "gone.txt"]  # missing plain paths are reported at read time
    assert [m[1] for m in misses] == ["no file matches this pattern"]
