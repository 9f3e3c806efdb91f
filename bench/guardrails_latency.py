"""Per-message latency of the input rail: p50/p95 with and without the embedder's time.

    python bench/guardrails_latency.py [--data-dir ../shared/data] [--rules-only]

Uses the XSTest and AdvBench prompts as a realistic mix of message lengths, pasted documents (2,000- and
8,000-character pieces of the project's own Markdown, English with some Korean, code and tables),
megabyte-long bad inputs (each measured five times, as three single timings make a noisy median), and the
own sets' Korean messages, with and without the n-gram head in the same run; prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from guardrails import Guardrails
from guardrails.evaluation import TimedEmbedder, load_eval_sets, load_own_sets, model_seconds
from guardrails.text import language

LONG_INPUTS = ["a" * 1_000_000, "😀" * 100_000, "how do I bake bread? " * 50_000]
ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [
    ROOT / "README.md",
    ROOT / "guardrails" / "README.md",
    *sorted((ROOT / "knowledge" / "sample_pack").glob("*.md")),
]


def pasted_documents() -> list[str]:
    """Pieces of the project's own documents, the size a user pastes: 2,000 and 8,000 characters."""
    pieces = []
    for path in DOCUMENTS:
        text = path.read_text(encoding="utf-8")
        for size in (2_000, 8_000):
            pieces += [text[start : start + size] for start in range(0, max(1, len(text) - size + 1), size)]
    return pieces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--rules-only", action="store_true")
    args = parser.parse_args()

    timer = None
    if not args.rules_only:
        import torch

        from knowledge.embedder import SentenceTransformerEmbedder

        torch.set_num_threads(1)
        timer = TimedEmbedder(SentenceTransformerEmbedder())
    guard = Guardrails.load(embedder=timer)
    prompts = [item.text for s in load_eval_sets(args.data_dir) for item in s.items]

    def measure(texts: list[str], rails_under_test: Guardrails = guard) -> dict[str, float]:
        total, rails = [], []
        for text in texts:
            model_before = model_seconds(rails_under_test, timer)
            start = time.perf_counter()
            rails_under_test.check_input(text)
            elapsed = time.perf_counter() - start
            total.append(elapsed * 1000)
            rails.append((elapsed - (model_seconds(rails_under_test, timer) - model_before)) * 1000)
        cuts = statistics.quantiles(total, n=20, method="inclusive")
        rail_cuts = statistics.quantiles(rails, n=20, method="inclusive")
        return {
            "p50_ms": round(statistics.median(total), 2),
            "p95_ms": round(cuts[18], 2),
            "p50_without_model_ms": round(statistics.median(rails), 2),
            "p95_without_model_ms": round(rail_cuts[18], 2),
        }

    long_inputs = [text for text in LONG_INPUTS for _ in range(5)]
    documents = pasted_documents()
    korean = [item.text for s in load_own_sets("all") for item in s.items if language(item.text) == "ko"]
    without_ngrams = Guardrails(guard.policy.model_copy(update={"ngram_head": None}), timer)
    report = {
        "messages": len(prompts),
        "eval_prompts": measure(prompts),
        "documents": len(documents),
        "pasted_documents": measure(documents),
        "long_inputs": measure(long_inputs),
        "korean_messages": len(korean),
        "korean": measure(korean),
        "korean_without_ngram_head": measure(korean, without_ngrams),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
