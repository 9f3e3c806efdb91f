"""Build the long-lived parts of the bot from the settings: knowledge base, guardrails, the pipeline."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from bot.config import EMBEDDED_MODEL, Settings
from bot.errors import DomainbotError

if TYPE_CHECKING:
    from bot.pipeline import Pipeline
    from knowledge import KnowledgeBase, KnowledgeConfig
    from knowledge.embedder import Embedder
    from knowledge.inform import Policy


def knowledge_config(settings: Settings) -> KnowledgeConfig:
    """The knowledge base's own configuration, from the bot's settings."""
    from knowledge import KnowledgeConfig

    try:
        return KnowledgeConfig(
            data_dir=settings.data_dir,
            embedder_path=settings.embedder_path,
            chunk_tokens=settings.chunk_tokens,
            chunk_overlap=settings.chunk_overlap,
            hybrid_weight=settings.hybrid_weight,
            fusion=settings.hybrid_fusion,
            max_document_mb=settings.max_document_mb,
            chroma_url=settings.chroma_url,
            chroma_token=settings.chroma_token.get_secret_value() if settings.chroma_token else None,
        )
    except ValueError as exc:
        raise DomainbotError(f"Invalid knowledge base settings: {exc}") from None


def open_knowledge(settings: Settings, embedder: Embedder | None = None) -> KnowledgeBase:
    """The knowledge base in the data folder; on its first start it loads the sample pack."""
    from knowledge import KnowledgeBase, KnowledgeError, ensure_sample_pack

    try:
        kb = KnowledgeBase(knowledge_config(settings), embedder)
        ensure_sample_pack(kb)
    except KnowledgeError as exc:
        raise DomainbotError(str(exc)) from None
    return kb


def inform_policy(settings: Settings) -> tuple[Policy, Policy | None]:
    """The configured policy, and the one while an adapter serves (None: the same). 'auto' drops unsupported
    claims of the embedded base model, whose 135M parameters rarely write a sentence beyond its passages that
    holds up, and marks those of other models and of adapters (which have learned from people's corrections)."""
    if settings.inform_policy != "auto":
        return settings.inform_policy, None
    small = settings.model == EMBEDDED_MODEL and settings.backend != "openai"
    return ("drop", "annotate") if small else ("annotate", None)


def build_pipeline(settings: Settings) -> Pipeline:
    """Everything an answer needs, built once: model, embedder, knowledge base, guardrails, feedback store."""
    from bot.chat import generation_params
    from bot.feedback import FeedbackStore
    from bot.memory import ConversationMemory
    from bot.model.factory import open_backend
    from bot.pipeline import Pipeline, PipelineOptions
    from bot.prompting import load_examples, load_prompt_text
    from guardrails import Guardrails, PolicyError
    from knowledge.embedder import EmbeddingCache, SentenceTransformerEmbedder
    from knowledge.wolfram import WolframClient

    started = time.perf_counter()
    opened = open_backend(settings, follow_registry=True)
    loaded_model = time.perf_counter()
    try:
        embedder = SentenceTransformerEmbedder(settings.embedder_path)
    except FileNotFoundError as exc:
        raise DomainbotError(str(exc)) from None
    try:
        guard = Guardrails.load(settings.guardrails_policy, embedder, settings.topical_mode)
    except PolicyError as exc:
        raise DomainbotError(str(exc)) from None
    app_id = settings.wolfram_app_id.get_secret_value() if settings.wolfram_app_id else None
    wolfram = WolframClient(
        app_id,
        url=settings.wolfram_url,
        timeout=settings.wolfram_timeout,
        mask=guard.mask_pii,
    )
    policy, policy_with_adapter = inform_policy(settings)
    pipeline = Pipeline(
        backend=opened.backend,
        params=generation_params(settings),
        guard=guard,
        feedback=FeedbackStore.in_data_dir(settings.data_dir),
        prompt_text=load_prompt_text(settings.prompt_file),
        examples=load_examples(settings.fewshot_file),
        embed=EmbeddingCache(embedder.embed),
        knowledge=open_knowledge(settings, embedder),
        wolfram=wolfram,
        memory=ConversationMemory(max_turns=settings.memory_turns),
        options=PipelineOptions(
            domain=settings.domain,
            retrieval_k=settings.retrieval_k,
            fewshot_k=settings.fewshot_k,
            inform_policy=policy,
            inform_policy_with_adapter=policy_with_adapter,
            inform_threshold=settings.inform_threshold,
            relevance_threshold=settings.relevance_threshold,
            extractive_fallback=settings.extractive_fallback,
            drop_flagged_passages=settings.drop_flagged_passages,
        ),
    )
    finished = time.perf_counter()
    pipeline.load_timings = {
        "load": finished - started,
        "load_model": loaded_model - started,
        "load_knowledge_and_rails": finished - loaded_model,
    }
    return pipeline
