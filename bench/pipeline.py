"""Pipeline overhead: everything except generation, as a share of answer time, on the default model.

Builds the bot as `domainbot ask` does (a fresh data folder with the sample pack; the model cache is shared with
the configured one so nothing is converted), answers a fixed set of questions about the sample pack, and
prints each stage's p50 and the overhead share (target: at most 10 % of answer time). Answers are not logged.

    python bench/pipeline.py [--questions 8]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
from pathlib import Path

QUESTIONS = [
    "How do I add documents to the knowledge base?",
    "How do I rate an answer?",
    "What happens when I add the same file twice?",
    "How do I remove a document?",
    "What does a training round produce?",
    "Which file formats can the knowledge base read?",
    "How do I change the model?",
    "What do the guardrails check?",
]
STAGES = (
    "input_rails", "retrieval", "computation", "grounding", "prompt", "generate", "inform", "extractive", "output_rails"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=len(QUESTIONS))
    args = parser.parse_args()

    from bot.config import load_settings

    configured = load_settings()
    data_dir = Path(tempfile.mkdtemp(prefix="domainbot-bench-"))
    os.environ["DOMAINBOT_DATA_DIR"] = str(data_dir)
    os.environ["DOMAINBOT_MODEL_CACHE_DIR"] = str(configured.models_dir)
    try:
        from bot.pipeline import Pipeline

        pipeline = Pipeline.from_settings(load_settings())
        pipeline.answer("Warm up.", "warm-up", log=False)
        answers = [pipeline.answer(q, f"bench-{i}", log=False) for i, q in enumerate(QUESTIONS[: args.questions])]
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)

    totals = [a.timings["total"] for a in answers]
    overheads = [a.timings["total"] - a.timings.get("generate", 0.0) for a in answers]
    share = sum(overheads) / sum(totals)
    print(f"model {pipeline.backend.model_name} ({pipeline.backend.name}), {len(answers)} answers")
    for stage in STAGES:
        values = [a.timings.get(stage, 0.0) * 1000 for a in answers]
        print(f"{stage:>13} p50 {statistics.median(values):9.1f} ms")
    print(f"{'answer':>13} p50 {statistics.median(totals) * 1000:9.1f} ms")
    print(
        f"overhead (all but generation): p50 {statistics.median(overheads) * 1000:.1f} ms, "
        f"{share:.1%} of answer time (target <= 10 %)"
    )
    print(
        json.dumps(
            {
                "overhead_share": share,
                "answers": len(answers),
                "p50_ms": {s: statistics.median(a.timings.get(s, 0.0) * 1000 for a in answers) for s in STAGES},
            }
        )
    )


if __name__ == "__main__":
    main()
