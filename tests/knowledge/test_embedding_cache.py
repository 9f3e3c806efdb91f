from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from knowledge.embedder import EmbeddingCache, HashEmbedder


class Counting:
    def __init__(self) -> None:
        self.inner = HashEmbedder(32)
        self.seen: list[str] = []

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        self.seen.extend(texts)
        return self.inner.embed(texts)


def test_known_texts_are_not_embedded_again_and_vectors_keep_their_order() -> None:
    counting = Counting()
    cache = EmbeddingCache(counting, max_texts=3)
    first = cache(["a b", "c d", "a b"])
    assert counting.seen == ["a b", "c d"]
    np.testing.assert_array_equal(first, counting.inner.embed(["a b", "c d", "a b"]))
    again = cache(["c d", "e f"])
    assert counting.seen == ["a b", "c d", "e f"]
    np.testing.assert_array_equal(again, counting.inner.embed(["c d", "e f"]))
    cache(["g h"])  # over max_texts: the least recently used ("a b") goes
    cache(["a b"])
    assert counting.seen[-1] == "a b" and len(counting.seen) == 5
    assert cache([]).shape[0] == 0
