"""Knowledge base: document loaders, chunking, embeddings, the vector and lexical stores, hybrid search."""

from knowledge.base import KnowledgeBase, KnowledgeError, SearchMode
from knowledge.config import KnowledgeConfig
from knowledge.embedder import Embedder, HashEmbedder, SentenceTransformerEmbedder
from knowledge.injection import InjectionScan, scan
from knowledge.loaders import Document, LoadError
from knowledge.results import FileResult, IngestReport, Location, Passage
from knowledge.sample_pack import ensure_sample_pack, sample_pack_dir

__all__ = [
    "Document",
    "Embedder",
    "FileResult",
    "HashEmbedder",
    "IngestReport",
    "InjectionScan",
    "KnowledgeBase",
    "KnowledgeConfig",
    "KnowledgeError",
    "LoadError",
    "Location",
    "Passage",
    "SearchMode",
    "SentenceTransformerEmbedder",
    "ensure_sample_pack",
    "sample_pack_dir",
    "scan",
]
