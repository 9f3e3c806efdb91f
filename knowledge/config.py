"""Configuration of the knowledge base: where it lives, how documents are cut, how search fuses."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal


@dataclass(frozen=True)
class KnowledgeConfig:
    """Everything the knowledge base reads; the bot builds it from its settings."""

    data_dir: Path
    """Folder that holds the knowledge base (`<data_dir>/knowledge`: Chroma store and SQLite catalog)."""

    embedder_path: Path | None = None
    """Local sentence-transformers model folder; None is the shipped all-MiniLM-L6-v2."""

    chunk_tokens: int = 200
    """Most tokens (words and punctuation marks) in one chunk."""

    chunk_overlap: int = 30
    """Tokens a chunk repeats from the end of the previous one in the same section."""

    hybrid_weight: float = 0.3
    """Weight of the dense ranking in the fusion, 0 (lexical only) to 1 (dense only)."""

    fusion: Literal["convex", "rrf"] = "convex"
    """How the two rankings are fused: a convex combination of cosine and normalised BM25 scores, or
    weighted reciprocal rank fusion."""

    lexical_context_weight: int = 2
    """How many times a chunk's document title and section heading count among its lexical terms (0: not
    at all). Changing it recomputes the lexical index when the knowledge base is next opened."""

    rrf_k: int = 60
    """Rank offset of reciprocal rank fusion: larger values flatten the difference between ranks."""

    max_document_mb: float = 20.0
    """Files larger than this are refused."""

    embed_batch_chunks: int = 512
    """Chunks embedded and written together; a crash loses at most one such batch of work."""

    chroma_url: str | None = None
    """A Chroma server (http://host:8000) that holds the vectors instead of the Chroma folder in `store_dir`.
    The catalog and the lexical index stay in `store_dir` either way."""

    chroma_token: str | None = field(default=None, repr=False)
    """Bearer token for that server."""

    def __post_init__(self) -> None:
        if self.chunk_tokens < 16:
            raise ValueError(f"`chunk_tokens` must be at least 16, got {self.chunk_tokens}.")
        if not 0 <= self.chunk_overlap < self.chunk_tokens // 2:
            raise ValueError(
                f"`chunk_overlap` must be between 0 and half of `chunk_tokens` ({self.chunk_tokens // 2}), "
                f"got {self.chunk_overlap}."
            )
        if not 0.0 <= self.hybrid_weight <= 1.0:
            raise ValueError(f"`hybrid_weight` must be between 0 and 1, got {self.hybrid_weight}.")
        if self.fusion not in ("convex", "rrf"):
            raise ValueError(f"`fusion` must be 'convex' or 'rrf', got {self.fusion!r}.")
        if not 0 <= self.lexical_context_weight <= 10:
            raise ValueError(f"`lexical_context_weight` must be between 0 and 10, got {self.lexical_context_weight}.")
        if self.rrf_k < 1:
            raise ValueError(f"`rrf_k` must be at least 1, got {self.rrf_k}.")
        if self.max_document_mb <= 0:
            raise ValueError(f"`max_document_mb` must be positive, got {self.max_document_mb}.")
        if self.embed_batch_chunks < 1:
            raise ValueError(f"`embed_batch_chunks` must be at least 1, got {self.embed_batch_chunks}.")
        if self.chroma_url is not None:
            from knowledge.store import parse_chroma_url

            parse_chroma_url(self.chroma_url)

    @property
    def store_dir(self) -> Path:
        return self.data_dir / "knowledge"
