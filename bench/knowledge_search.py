"""Search latency at 100,000 chunks: p50 and p95 of `KnowledgeBase.search`, query embedding included.

Target: p50 <= 30 ms. To keep the build to minutes, the 100,000 synthetic chunks go through the real ingest
(chunking, catalog, lexical index, Chroma) with precomputed random unit vectors in place of the embedder;
only the queries are embedded for real, with the shipped all-MiniLM-L6-v2.
Run: python bench/knowledge_search.py [--chunks 100000] [--queries 200] [--store DIR]
(`--store` keeps the built index in DIR and reuses it on the next run.)
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from knowledge_synthetic import Lexicon, paragraph

from knowledge import KnowledgeBase, KnowledgeConfig, SentenceTransformerEmbedder
from knowledge.loaders import Block, Document, content_hash

CHUNKS_PER_DOCUMENT = 100


class PrecomputedEmbedder:
    """Random unit vectors under the real embedder's name and dimension: the store cannot tell them apart."""

    def __init__(self, name: str, dimension: int) -> None:
        self.name, self.dimension = name, dimension
        self.rng = np.random.default_rng(0)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        vectors = self.rng.standard_normal((len(texts), self.dimension)).astype(np.float32)  # (N, D)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def synthetic_documents(count: int, rng: random.Random, lexicon: Lexicon) -> list[Document]:
    documents = []
    for d in range(count):
        parts, blocks, cursor = [], [], 0
        for s in range(CHUNKS_PER_DOCUMENT):
            text = paragraph(rng, lexicon, 3)
            blocks.append(Block(cursor, cursor + len(text), section=f"Section {s}"))  # one chunk per section
            parts.append(text)
            cursor += len(text) + 2
        body = "\n\n".join(parts)
        documents.append(
            Document(
                f"synthetic:{d}", f"Document {d}", body, tuple(blocks), content_hash(body.encode()), "md"
            )
        )
    return documents


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("-k", type=int, default=5)
    parser.add_argument("--store", type=Path, help="Keep the built index here and reuse it next time.")
    args = parser.parse_args()

    embedder = SentenceTransformerEmbedder()
    rng, lexicon = random.Random(2), Lexicon(20_000)
    with tempfile.TemporaryDirectory(prefix="domainbot-bench-") as folder:
        config = KnowledgeConfig(data_dir=args.store or Path(folder), embed_batch_chunks=5_000)
        started = time.perf_counter()
        builder = KnowledgeBase(config, PrecomputedEmbedder(embedder.name, embedder.dimension))
        documents = synthetic_documents(args.chunks // CHUNKS_PER_DOCUMENT, rng, lexicon)
        build = builder.add_documents(documents)
        builder.close()
        build_s = time.perf_counter() - started

        kb = KnowledgeBase(config, embedder)
        queries = [" ".join(lexicon.sample(rng, rng.randint(3, 8))) for _ in range(args.queries)]
        started = time.perf_counter()
        kb.search("warm up: loads the lexical postings into memory", k=args.k)
        first_search_s = time.perf_counter() - started
        latencies: dict[str, list[float]] = {"hybrid": [], "lexical": [], "dense": [], "embed_only": []}
        for query in queries:
            for mode, times in latencies.items():
                started = time.perf_counter()
                if mode == "embed_only":
                    embedder.embed([query])
                else:
                    kb.search(query, k=args.k, mode=mode)  # type: ignore[arg-type]
                times.append((time.perf_counter() - started) * 1000)
        stats = kb.stats()
        kb.close()

    result = {
        "chunks": stats["chunks"],
        "vectors": stats["vectors"],
        "lexical_terms": stats["lexical_terms"],
        "queries": args.queries,
        "k": args.k,
        "build_s": round(build_s, 1),
        "build_outcomes": build.summary(),
        "first_search_s (loads lexical postings)": round(first_search_s, 2),
        **{
            f"{mode}_ms": {
                "p50": round(statistics.median(times), 1),
                "p95": round(percentile(times, 95), 1),
            }
            for mode, times in latencies.items()
        },
        "note": "chunk vectors are precomputed random unit vectors; queries are embedded for real",
        "target": {"hybrid_ms.p50": "<= 30"},
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
