"""Retrieval evaluation on KorQuAD v1.0: every paragraph is a document, every question asks for its paragraph.

recall@k is the share of questions whose paragraph is among the first k distinct documents retrieved.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from knowledge import catalog
from knowledge.base import KnowledgeBase
from knowledge.config import KnowledgeConfig
from knowledge.embedder import Embedder
from knowledge.fusion import convex_combination, reciprocal_rank_fusion
from knowledge.loaders import Block, Document, content_hash

RECALL_AT = (1, 5, 20)
# Chunks fetched per retriever; paragraphs split into several chunks need more than the largest k.
CANDIDATES = 100
WEIGHT_SWEEP = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7)


@dataclass(frozen=True)
class Question:
    text: str
    source: str


def load_korquad(path: Path, max_articles: int | None = None) -> tuple[list[Document], list[Question]]:
    """Paragraphs as documents (source `korquad:<article>/<paragraph>`) and their questions."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        articles = data["data"][:max_articles]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(
            f"{path} is not a KorQuAD v1 JSON file (expected {{'data': [...]}}): {exc}"
        ) from None
    documents: list[Document] = []
    questions: list[Question] = []
    for a, article in enumerate(articles):
        for p, paragraph in enumerate(article["paragraphs"]):
            source = f"korquad:{a}/{p}"
            text = paragraph["context"]
            block = Block(0, len(text), section=None, page=None)
            digest = content_hash(text.encode())
            documents.append(Document(source, article["title"], text, (block,), digest, "korquad"))
            questions.extend(Question(qa["question"], source) for qa in paragraph["qas"])
    return documents, questions


def _recall(rankings: list[list[str]], questions: list[Question]) -> dict[str, float]:
    found = {k: 0 for k in RECALL_AT}
    for ranking, question in zip(rankings, questions, strict=True):
        for k in RECALL_AT:
            found[k] += question.source in ranking[:k]
    return {f"recall@{k}": round(found[k] / max(len(questions), 1), 4) for k in RECALL_AT}


def evaluate_korquad(
    path: Path,
    config: KnowledgeConfig | None = None,
    embedder: Embedder | None = None,
    max_articles: int | None = None,
) -> dict[str, Any]:
    """Index the paragraphs in a temporary knowledge base and measure recall of dense, lexical and hybrid."""
    started = time.perf_counter()
    documents, questions = load_korquad(path, max_articles)
    with tempfile.TemporaryDirectory(prefix="domainbot-eval-") as folder:
        config = replace(config or KnowledgeConfig(data_dir=Path(folder)), data_dir=Path(folder))
        kb = KnowledgeBase(config, embedder)
        try:
            kb.add_documents(documents)
            indexed = time.perf_counter()
            query_vectors = kb.embedder.embed([q.text for q in questions])
            source_of_row = dict(kb.db.execute("SELECT rowid, source FROM chunks"))
            dense, lexical = [], []
            for question, vector in zip(questions, query_vectors, strict=True):
                dense.append(kb.rank(question.text, CANDIDATES, "dense", vector))
                lexical.append(kb.rank(question.text, CANDIDATES, "lexical"))
            searched = time.perf_counter()
            chunks = len(source_of_row)
            embedder_name = catalog.get_meta(kb.db, "embedder")
        finally:
            kb.close()

    def documents_of(rows: list[int]) -> list[str]:
        return list(dict.fromkeys(source_of_row[r] for r in rows))

    def hybrid(weight: float, fusion: str) -> dict[str, float]:
        fused = []
        for d, lx in zip(dense, lexical, strict=True):
            if fusion == "rrf":
                ranked = reciprocal_rank_fusion([r for r, _ in d], [r for r, _ in lx], weight, config.rrf_k)
            else:
                ranked = convex_combination(d, lx, weight)
            fused.append(documents_of([r for r, _ in ranked]))
        return _recall(fused, questions)

    return {
        "data": str(path),
        "documents": len(documents),
        "chunks": chunks,
        "questions": len(questions),
        "hybrid_weight": config.hybrid_weight,
        "fusion": config.fusion,
        "dense": _recall([documents_of([r for r, _ in d]) for d in dense], questions),
        "lexical": _recall([documents_of([r for r, _ in lx]) for lx in lexical], questions),
        "hybrid": hybrid(config.hybrid_weight, config.fusion),
        "hybrid_by_weight": {
            fusion: {str(w): hybrid(w, fusion) for w in WEIGHT_SWEEP} for fusion in ("convex", "rrf")
        },
        "seconds": {
            "index": round(indexed - started, 1),
            "search": round(searched - indexed, 1),
            "total": round(time.perf_counter() - started, 1),
        },
        "embedder": embedder_name,
    }
