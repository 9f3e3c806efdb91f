"""A few checks with the shipped all-MiniLM-L6-v2 embedder instead of the hash fake."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from knowledge import KnowledgeBase, KnowledgeConfig, SentenceTransformerEmbedder, ensure_sample_pack


@pytest.fixture(scope="module")
def minilm() -> SentenceTransformerEmbedder:
    try:
        return SentenceTransformerEmbedder()
    except FileNotFoundError as exc:
        pytest.skip(f"the shipped embedder is not installed: {exc}")


@pytest.fixture
def sample_kb(clean_env: Path, minilm: SentenceTransformerEmbedder) -> Iterator[KnowledgeBase]:
    kb = KnowledgeBase(KnowledgeConfig(data_dir=clean_env), minilm)
    ensure_sample_pack(kb)
    yield kb
    kb.close()


def test_embedder_gives_unit_vectors_of_its_dimension(minilm: SentenceTransformerEmbedder) -> None:
    vectors = minilm.embed(["tea", "a longer sentence about coffee"])
    assert vectors.shape == (2, minilm.dimension) == (2, 384)
    assert abs(float((vectors**2).sum(axis=1).max()) - 1.0) < 1e-4


@pytest.mark.parametrize(
    ("question", "source", "fact"),
    [
        ("How can I get rid of a file I put into the knowledge base?", "knowledge-base.md", "kb remove"),
        ("What happens when someone gives an answer a thumbs down?", "feedback-and-training.md", "corrected"),
        ("Which language model is bundled by default?", "getting-started.md", "SmolLM2-135M-Instruct"),
    ],
)
@pytest.mark.parametrize("mode", ["dense", "hybrid"])
def test_sample_pack_questions_are_grounded(
    sample_kb: KnowledgeBase, question: str, source: str, fact: str, mode: str
) -> None:
    passages = sample_kb.search(question, k=3, mode=mode)  # type: ignore[arg-type]
    assert any(Path(p.source).name == source and fact in p.text for p in passages)
