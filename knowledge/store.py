"""The vector store: a Chroma collection of chunk vectors computed by the project's embedder.

Chroma runs in process on a folder of the data folder (`PersistentClient`), or, with `url` set, is a Chroma
server (`HttpClient`) that several machines share. Only the vectors move to the server: the catalog and the
lexical index stay in the data folder's SQLite file, so every process that searches must see the same data
folder (see docs/scaling.md).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

COLLECTION = "chunks"
DEFAULT_PORT = {"http": 8000, "https": 443}  # 8000: where `chroma run` listens unless told otherwise


def parse_chroma_url(url: str) -> tuple[str, int, bool]:
    """(host, port, https) of a Chroma server URL such as http://chroma:8000; ValueError for anything else."""
    parts = urlsplit(url.strip())
    if parts.username or parts.password:
        raise ValueError("`chroma_url` must not carry a user name or password; pass a token instead.")
    if parts.scheme not in DEFAULT_PORT or not parts.hostname or parts.path.strip("/") or parts.query:
        raise ValueError(f"`chroma_url` must look like http://host:8000 (scheme, host, optional port), got {url!r}.")
    return parts.hostname, parts.port or DEFAULT_PORT[parts.scheme], parts.scheme == "https"


class VectorStore:
    """Chunk id -> vector, with its source to find a source's vectors. Vectors come from our embedder."""

    def __init__(self, path: Path, url: str | None = None, token: str | None = None) -> None:
        """Vectors in the Chroma folder `path`, or on the Chroma server at `url` (with a Bearer `token`)."""
        import chromadb
        from chromadb.config import Settings

        settings = Settings(anonymized_telemetry=False, allow_reset=False)
        self.url = url
        self.where = str(path) if url is None else url
        address = None if url is None else parse_chroma_url(url)
        with self._remote("could not be reached"):
            if address is None:
                self.client = chromadb.PersistentClient(path=str(path), settings=settings)
            else:
                host, port, ssl = address
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                self.client = chromadb.HttpClient(host=host, port=port, ssl=ssl, headers=headers, settings=settings)
            # No embedding function: Chroma's default one would download a model; we always pass vectors.
            self.collection = self.client.get_or_create_collection(
                COLLECTION, embedding_function=None, configuration={"hnsw": {"space": "cosine"}}
            )
            self.max_batch = int(self.client.get_max_batch_size())

    @contextlib.contextmanager
    def _remote(self, what: str) -> Iterator[None]:
        """A Chroma server that fails (down, refusing the token, another version) becomes a KnowledgeError that
        names it; the in-process store raises as it always did."""
        if self.url is None:
            yield
            return
        from knowledge.base import KnowledgeError  # imported here: knowledge.base imports this module

        try:
            yield
        except Exception as exc:
            reason = " ".join(str(exc).split())[:200].rstrip(".?!") or type(exc).__name__
            raise KnowledgeError(
                f"The Chroma server at {self.url} {what}: {reason}. Check that it is running and that "
                "DOMAINBOT_CHROMA_URL and DOMAINBOT_CHROMA_TOKEN are right."
            ) from None

    def upsert(self, ids: Sequence[str], vectors: np.ndarray, sources: Sequence[str]) -> None:
        with self._remote("failed to store vectors"):
            self._upsert(ids, vectors, sources)

    def _upsert(self, ids: Sequence[str], vectors: np.ndarray, sources: Sequence[str]) -> None:
        for start in range(0, len(ids), self.max_batch):
            stop = start + self.max_batch
            self.collection.upsert(
                ids=list(ids[start:stop]),
                embeddings=vectors[start:stop],
                metadatas=[{"source": s} for s in sources[start:stop]],
            )

    def delete(self, ids: Sequence[str]) -> None:
        with self._remote("failed to delete vectors"):
            for start in range(0, len(ids), self.max_batch):
                self.collection.delete(ids=list(ids[start : start + self.max_batch]))

    def ids_of_source(self, source: str) -> list[str]:
        with self._remote("failed to list vectors"):
            found = self.collection.get(where={"source": source}, include=[])
        return list(found["ids"])

    def count(self) -> int:
        with self._remote("failed to count vectors"):
            count = self.collection.count()
        return int(count)

    def query(self, vector: np.ndarray, k: int) -> list[tuple[str, float]]:
        """(chunk id, cosine similarity) of the k nearest vectors (or all, if fewer), nearest first."""
        # No count() first: in Chroma it costs several times the query itself at 100k vectors.
        with self._remote("failed to search"):
            result = self.collection.query(query_embeddings=vector[None, :], n_results=k, include=["distances"])
        distances = (result["distances"] or [[]])[0]
        return [(i, 1.0 - float(d)) for i, d in zip(result["ids"][0], distances, strict=True)]
