"""The vector store: a Chroma persistent collection of chunk vectors computed by the project's embedder."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

COLLECTION = "chunks"


class VectorStore:
    """Chunk id -> vector, with its source to find a source's vectors. Vectors come from our embedder."""

    def __init__(self, path: Path) -> None:
        import chromadb
        from chromadb.config import Settings

        self.client = chromadb.PersistentClient(
            path=str(path), settings=Settings(anonymized_telemetry=False, allow_reset=False)
        )
        # No embedding function: Chroma's default one would download a model; we always pass vectors.
        self.collection = self.client.get_or_create_collection(
            COLLECTION, embedding_function=None, configuration={"hnsw": {"space": "cosine"}}
        )
        self.max_batch = int(self.client.get_max_batch_size())

    def upsert(self, ids: Sequence[str], vectors: np.ndarray, sources: Sequence[str]) -> None:
        for start in range(0, len(ids), self.max_batch):
            stop = start + self.max_batch
            self.collection.upsert(
                ids=list(ids[start:stop]),
                embeddings=vectors[start:stop],
                metadatas=[{"source": s} for s in sources[start:stop]],
            )

    def delete(self, ids: Sequence[str]) -> None:
        for start in range(0, len(ids), self.max_batch):
            self.collection.delete(ids=list(ids[start : start + self.max_batch]))

    def ids_of_source(self, source: str) -> list[str]:
        return list(self.collection.get(where={"source": source}, include=[])["ids"])

    def count(self) -> int:
        return int(self.collection.count())

    def query(self, vector: np.ndarray, k: int) -> list[tuple[str, float]]:
        """(chunk id, cosine similarity) of the k nearest vectors (or all, if fewer), nearest first."""
        # No count() first: in Chroma it costs several times the query itself at 100k vectors.
        result = self.collection.query(query_embeddings=vector[None, :], n_results=k, include=["distances"])
        distances = (result["distances"] or [[]])[0]
        return [(i, 1.0 - float(d)) for i, d in zip(result["ids"][0], distances, strict=True)]
