"""The pipeline the front-end tests (Telegram, HTTP) drive: the real one with a scripted model, rule-only
guardrails, a hash embedder and a one-document knowledge base in the test's folder."""

from __future__ import annotations

from pathlib import Path

from bot.feedback import FeedbackStore
from bot.model.backend import Backend, GenerationParams
from bot.pipeline import Pipeline, PipelineOptions
from bot.prompting import AnswerLimits, load_examples, load_prompt_text
from guardrails import Guardrails
from knowledge import HashEmbedder, KnowledgeBase, KnowledgeConfig

WARRANTY = "All grinders carry a two-year warranty from the date of purchase."
embedder = HashEmbedder(128)


def make_pipeline(data_dir: Path, model: Backend, guard: Guardrails, max_new_tokens: int) -> Pipeline:
    docs = data_dir / "docs"
    docs.mkdir(parents=True, exist_ok=True)
    (docs / "warranty.md").write_text(f"# Warranty\n\n{WARRANTY}\n", encoding="utf-8")
    kb = KnowledgeBase(KnowledgeConfig(data_dir=data_dir), embedder)
    kb.add([docs])
    return Pipeline(
        backend=model,
        params=GenerationParams(max_new_tokens=max_new_tokens),
        guard=guard,
        feedback=FeedbackStore(data_dir / "feedback.sqlite3"),
        # Without the shipped prompt's short-answer limits: the front ends must carry long answers too.
        prompt_text=load_prompt_text().model_copy(update={"generation": AnswerLimits()}),
        examples=load_examples(),
        embed=embedder.embed,
        knowledge=kb,
        options=PipelineOptions(retrieval_k=2, fewshot_k=0),
    )
