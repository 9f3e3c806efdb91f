"""Ingest throughput against bare SentenceTransformer.encode of the same chunks, and unchanged re-ingest.

Targets: ingest throughput >= 0.9 x bare encode; unchanged re-ingest >= 20 x faster than the first ingest.
Both sides run in the same process on the same chunks, alternating for `--rounds` rounds; the best time
of each side is compared, because other load on shared CPUs only ever adds time.
Run: python bench/knowledge_ingest.py [--documents 40] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

from knowledge_synthetic import Lexicon, document

from knowledge import KnowledgeBase, KnowledgeConfig, SentenceTransformerEmbedder
from knowledge.chunking import chunk_document
from knowledge.loaders import parse_document


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--documents", type=int, default=40, help="Markdown files to ingest.")
    parser.add_argument("--rounds", type=int, default=3, help="Alternating rounds of bare encode and ingest.")
    args = parser.parse_args()

    embedder = SentenceTransformerEmbedder()
    rng, lexicon = random.Random(1), Lexicon(3000)
    with tempfile.TemporaryDirectory(prefix="domainbot-bench-") as folder:
        docs = Path(folder) / "docs"
        docs.mkdir()
        for i in range(args.documents):
            (docs / f"doc{i:04d}.md").write_text(
                document(rng, lexicon, sections=3, paragraphs=3), encoding="utf-8"
            )
        config = KnowledgeConfig(data_dir=Path(folder) / "data")
        texts = []
        for path in sorted(docs.iterdir()):
            doc = parse_document(path, path.read_bytes(), "h")
            texts.extend(c.text for c in chunk_document(doc, config.chunk_tokens, config.chunk_overlap))
        embedder.model.encode(texts[:64], batch_size=embedder.batch_size)  # warm-up at real shapes

        bare, ingest, unchanged = [], [], []
        for round_ in range(args.rounds):
            started = time.perf_counter()
            embedder.model.encode(texts, batch_size=embedder.batch_size, normalize_embeddings=True)
            bare.append(time.perf_counter() - started)

            kb = KnowledgeBase(KnowledgeConfig(data_dir=Path(folder) / f"data{round_}"), embedder)
            started = time.perf_counter()
            first = kb.add([docs])
            ingest.append(time.perf_counter() - started)
            started = time.perf_counter()
            again = kb.add([docs])
            unchanged.append(time.perf_counter() - started)
            kb.close()
            assert sum(r.chunks for r in first.results) == len(texts)
            assert again.count("unchanged") == args.documents

    result = {
        "documents": args.documents,
        "chunks": len(texts),
        "rounds": args.rounds,
        "bare_encode_s": [round(t, 2) for t in bare],
        "first_ingest_s": [round(t, 2) for t in ingest],
        "unchanged_reingest_s": [round(t, 4) for t in unchanged],
        "bare_encode_chunks_per_s": round(len(texts) / min(bare), 1),
        "ingest_chunks_per_s": round(len(texts) / min(ingest), 1),
        "ingest_vs_bare_throughput": round(min(bare) / min(ingest), 3),
        "ingest_vs_bare_throughput_of_medians": round(statistics.median(bare) / statistics.median(ingest), 3),
        "unchanged_speedup": round(min(ingest) / min(unchanged), 1),
        "targets": {"ingest_vs_bare_throughput": ">= 0.9", "unchanged_speedup": ">= 20"},
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
