"""Knowledge-base fixtures: a knowledge base on the hash embedder in the test's data folder."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from knowledge import HashEmbedder, KnowledgeBase, KnowledgeConfig


class CountingEmbedder(HashEmbedder):
    """The hash embedder, recording how many texts it embedded."""

    def __init__(self) -> None:
        super().__init__(dimension=64)
        self.embedded = 0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.embedded += len(texts)
        return super().embed(texts)


@pytest.fixture
def embedder() -> CountingEmbedder:
    return CountingEmbedder()


@pytest.fixture
def config(clean_env: Path) -> KnowledgeConfig:
    return KnowledgeConfig(data_dir=clean_env, chunk_tokens=40, chunk_overlap=8, embed_batch_chunks=16)


@pytest.fixture
def kb(config: KnowledgeConfig, embedder: CountingEmbedder) -> Iterator[KnowledgeBase]:
    base = KnowledgeBase(config, embedder)
    yield base
    base.close()


def consistency(kb: KnowledgeBase) -> dict[str, object]:
    """What must hold after every write: catalog, lexical index and Chroma hold the same chunks."""
    catalog_ids = [i for (i,) in kb.db.execute("SELECT id FROM chunks")]
    chunk_rowids = {r for (r,) in kb.db.execute("SELECT rowid FROM chunks")}
    lexical_rowids = {r for (r,) in kb.db.execute("SELECT chunk FROM chunk_terms")}
    vector_ids = kb.vectors.collection.get(include=[])["ids"]
    return {
        "duplicates": len(catalog_ids) - len(set(catalog_ids)),
        "vectors_not_in_catalog": sorted(set(vector_ids) - set(catalog_ids)),
        "catalog_not_in_vectors": sorted(set(catalog_ids) - set(vector_ids)),
        "lexical_mismatch": sorted(chunk_rowids ^ lexical_rowids),
        "pending": [s for (s,) in kb.db.execute("SELECT source FROM pending")],
        "chunk_counts_match": all(
            n == c
            for n, c in kb.db.execute(
                "SELECT d.chunks, (SELECT count(*) FROM chunks c WHERE c.source = d.source) FROM documents d"
            )
        ),
    }


CONSISTENT = {
    "duplicates": 0,
    "vectors_not_in_catalog": [],
    "catalog_not_in_vectors": [],
    "lexical_mismatch": [],
    "pending": [],
    "chunk_counts_match": True,
}
