from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from knowledge.lexical import LexicalIndex, chunk_context, lexical_terms, strip_particle

TEXTS = {
    1: "서울은 대한민국의 수도이다. 한강이 서울을 가로질러 흐른다.",
    2: "부산은 대한민국 제2의 도시로, 큰 항구가 있다.",
    3: "Green tea is steeped at 80 degrees for two minutes.",
    4: "Black tea is steeped at 95 degrees; black tea is oxidised.",
}


@pytest.fixture
def index() -> LexicalIndex:
    lexical = LexicalIndex(sqlite3.connect(":memory:"))
    lexical.add(list(TEXTS), list(TEXTS.values()), [""] * len(TEXTS))
    return lexical


@pytest.mark.parametrize(
    ("word", "stem"),
    [("서울에서는", "서울"), ("한강이", "한강"), ("도시로", "도시"), ("이", "이"), ("나라", "나라")],
)
def test_strip_particle(word: str, stem: str) -> None:
    assert strip_particle(word) == stem


def test_terms_are_bigrams_for_korean_and_words_for_latin() -> None:
    terms = lexical_terms("Tea 서울에서")
    assert terms["w:tea"] == 1 and terms["w:서울"] == 1
    assert {"c:서울", "c:울에", "c:에서"} <= set(terms)
    assert not any(t.startswith("c:") and t[2:].isascii() for t in terms)
    assert "c:19" in lexical_terms("in 1989") and "c:in" not in lexical_terms("in 1989")


@pytest.mark.parametrize(
    ("query", "best"),
    [
        ("대한민국의 수도는 어디인가?", 1),  # particles differ from the text (수도이다 vs 수도는)
        ("항구 도시", 2),
        ("how long is green tea steeped", 3),
        ("black tea", 4),
    ],
)
def test_bm25_ranks_the_matching_text_first(index: LexicalIndex, query: str, best: int) -> None:
    assert index.search(query, 2)[0][0] == best


def test_unknown_terms_find_nothing(index: LexicalIndex) -> None:
    assert index.search("zzzz qqqq", 5) == []


def test_index_persists_and_removal_is_seen(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "lex.sqlite", isolation_level=None)
    LexicalIndex(db).add(list(TEXTS), list(TEXTS.values()), [""] * len(TEXTS))
    db.close()
    reopened = LexicalIndex(sqlite3.connect(tmp_path / "lex.sqlite", isolation_level=None))
    assert reopened.search("black tea", 1)[0][0] == 4
    reopened.remove([4])
    assert 4 not in [key for key, _ in reopened.search("black tea", 4)]


def test_writes_from_another_connection_are_seen(tmp_path: Path) -> None:
    path = tmp_path / "lex.sqlite"
    reader = LexicalIndex(sqlite3.connect(path, isolation_level=None))
    reader.add([1], ["green tea"], [""])
    assert [key for key, _ in reader.search("oolong", 5)] == []
    writer = LexicalIndex(sqlite3.connect(path, isolation_level=None))
    writer.add([2], ["oolong tea from a second process"], [""])
    assert [key for key, _ in reader.search("oolong", 5)] == [2]
    reader.add([3], ["oolong again, new terms: formosa"], [""])  # must not reuse an id the writer took
    assert [key for key, _ in writer.search("formosa", 5)] == [3]


def test_the_title_and_section_of_a_chunk_count_as_its_terms() -> None:
    """A passage that never names its subject is found by it, and the title outweighs a passing mention."""
    index = LexicalIndex(sqlite3.connect(":memory:"), context_weight=2)
    index.add(
        [1, 2],
        ["1953년 고창군에서 태어나 법학과를 졸업했다.", "김이수 판사와 함께 1953년 고창군 장터를 찾았다."],
        [chunk_context("김이수", "생애"), chunk_context("고창군 장터", None)],
    )
    assert index.search("김이수는 몇 년에 태어났나?", 2)[0][0] == 1
    plain = LexicalIndex(sqlite3.connect(":memory:"), context_weight=0)
    plain.add([1, 2], ["1953년 고창군에서 태어나 법학과를 졸업했다.", "김이수 판사"], ["김이수", ""])
    assert [key for key, _ in plain.search("김이수", 2)] == [2]


def test_chunk_context_names_a_repeated_section_once() -> None:
    assert chunk_context("Guide", "Guide") == "Guide"
    assert chunk_context("Guide", "Install") == "Guide\nInstall"
    assert chunk_context("Guide", None) == "Guide"
