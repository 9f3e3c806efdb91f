from __future__ import annotations

import json
from pathlib import Path

import pytest

from knowledge import HashEmbedder, KnowledgeConfig
from knowledge.evaluation import evaluate_korquad, load_korquad
from tests.conftest import SHARED_DATA

KORQUAD = SHARED_DATA / "korquad_v1.0_dev.json"
needs_korquad = pytest.mark.skipif(not KORQUAD.exists(), reason=f"KorQuAD dev set not found at {KORQUAD}")


def write_tiny_korquad(path: Path) -> Path:
    paragraphs = [
        ("서울은 대한민국의 수도이며 한강이 흐른다.", "대한민국의 수도는?"),
        ("부산은 대한민국 제2의 도시이자 큰 항구 도시이다.", "제2의 도시이자 항구 도시는?"),
        ("제주도는 화산섬으로 한라산이 있다.", "한라산이 있는 화산섬은?"),
    ]
    data = {
        "version": "tiny",
        "data": [
            {
                "title": "도시",
                "paragraphs": [{"context": c, "qas": [{"question": q, "id": str(i), "answers": []}]}],
            }
            for i, (c, q) in enumerate(paragraphs)
        ],
    }
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def test_evaluation_reports_recall_for_each_retriever(tmp_path: Path) -> None:
    result = evaluate_korquad(write_tiny_korquad(tmp_path / "tiny.json"), embedder=HashEmbedder())
    assert (result["documents"], result["questions"]) == (3, 3)
    assert result["lexical"] == {"recall@1": 1.0, "recall@5": 1.0, "recall@20": 1.0}
    assert set(result["dense"]) == set(result["hybrid"]) == {"recall@1", "recall@5", "recall@20"}
    assert set(result["hybrid_by_weight"]) == {"convex", "rrf"}


def test_a_file_that_is_not_korquad_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.json"
    path.write_text('{"rows": []}', encoding="utf-8")
    with pytest.raises(ValueError, match="not a KorQuAD"):
        load_korquad(path)


@needs_korquad
def test_lexical_recall_on_the_first_korquad_articles(tmp_path: Path) -> None:
    config = KnowledgeConfig(data_dir=tmp_path)
    result = evaluate_korquad(KORQUAD, config, embedder=HashEmbedder(), max_articles=10)
    assert result["questions"] > 300
    assert result["lexical"]["recall@1"] >= 0.85
    assert result["lexical"]["recall@5"] >= 0.95
    assert result["hybrid"]["recall@5"] >= result["lexical"]["recall@5"] - 0.02
