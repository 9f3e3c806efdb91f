"""The answer pipeline every front end calls: one question in, one checked, cited, logged answer out.

    input rails -> retrieval -> computation -> prompt -> generation (streamed) -> Inform -> output rails -> log

Each stage is a call on an object built once (`Pipeline.from_settings`) and is timed. A stage that fails on
bad input or a broken dependency degrades the answer instead of ending it: an empty knowledge base gives no
passages, WolframAlpha down gives no lookup, a full disk skips the log with a warning.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from bot.feedback import FeedbackStore, InteractionRecord
from bot.memory import ConversationMemory
from bot.model.backend import Backend, GenerationParams, GenerationResult, Message
from bot.model.swap import serving
from bot.prompting import ExampleSelector, FewShotExample, PromptText, build_messages, quote_passage
from knowledge.calculator import Computation, check_equations, final_number, format_number, route
from knowledge.inform import UNVERIFIED_MARK, Policy, check_claims

if TYPE_CHECKING:
    import numpy as np

    from bot.config import Settings
    from guardrails import Guardrails, Verdict
    from knowledge import KnowledgeBase, Passage
    from knowledge.wolfram import WolframClient

log = logging.getLogger(__name__)

OnPiece = Callable[[str], None]
EMPTY_QUESTION = "Please type a question — I did not get any text."
UNVERIFIED = "I could not verify an answer to this against the knowledge base."


class Citation(BaseModel):
    number: int
    source: str
    location: str
    snippet: str
    passage_id: str | None = None


class ClaimResult(BaseModel):
    text: str
    verdict: str
    support: float
    passage: int | None = None
    reasons: list[str] = Field(default_factory=list)


class EquationResult(BaseModel):
    expression: str
    stated: float
    computed: float
    correct: bool


class ComputationResult(BaseModel):
    """What the computation stage found: the router's call, and what the calculator or WolframAlpha said."""

    kind: str
    expression: str | None = None
    value: float | None = None
    source: Literal["calculator", "wolframalpha"] | None = None
    status: str | None = None
    text: str | None = None
    equations: list[EquationResult] = Field(default_factory=list)


class Answer(BaseModel):
    """One answered question with everything that went into it."""

    text: str
    conversation_id: str
    interaction_id: str | None = None
    blocked: bool = False
    notes: list[str] = Field(default_factory=list)
    citations: list[Citation] = Field(default_factory=list)
    claims: list[ClaimResult] = Field(default_factory=list)
    computation: ComputationResult | None = None
    verdicts: dict[str, Any] = Field(default_factory=dict)
    raw_text: str = ""
    model: str = ""
    adapter: str | None = None
    backend: str = ""
    finish_reason: str = ""
    usage: dict[str, int] = Field(default_factory=dict)
    timings: dict[str, float] = Field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump()


@dataclass(frozen=True)
class PipelineOptions:
    domain: str = "domainbot"
    retrieval_k: int = 4
    fewshot_k: int = 2
    inform_policy: Policy = "annotate"
    inform_threshold: float = 0.5
    # Passages flagged as likely prompt injection are quoted inside a fence (False) or left out (True).
    drop_flagged_passages: bool = False


@dataclass
class _Source:
    """A numbered passage as the prompt shows it, and where it came from."""

    prompt_text: str
    plain_text: str
    source: str
    location: str
    passage_id: str | None = None


class Pipeline:
    """Answers questions with retrieval, computation, guardrails and Inform around the model."""

    def __init__(
        self,
        backend: Backend,
        params: GenerationParams,
        guard: Guardrails,
        feedback: FeedbackStore,
        prompt_text: PromptText,
        examples: Sequence[FewShotExample],
        embed: Callable[[Sequence[str]], np.ndarray],
        knowledge: KnowledgeBase | None = None,
        wolfram: WolframClient | None = None,
        memory: ConversationMemory | None = None,
        options: PipelineOptions | None = None,
    ) -> None:
        self.backend = backend
        self.params = params
        self.guard = guard
        self.feedback = feedback
        self.prompt_text = prompt_text
        self.selector = ExampleSelector(examples, embed)
        self.embed = embed
        self.knowledge = knowledge
        self.wolfram = wolfram
        self.memory = memory or ConversationMemory()
        self.options = options or PipelineOptions()
        self.load_timings: dict[str, float] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> Pipeline:
        from bot.services import build_pipeline

        return build_pipeline(settings)

    def reset(self, conversation_id: str) -> None:
        self.memory.reset(conversation_id)

    def answer(
        self,
        question: str,
        conversation_id: str = "default",
        user_id: str = "",
        channel: str = "terminal",
        on_piece: OnPiece | None = None,
        log: bool = True,
        history: Sequence[Message] | None = None,
        params: GenerationParams | None = None,
    ) -> Answer:
        """Answer `question` in its conversation; `on_piece` receives the raw answer as it is generated.
        Evaluations pass `log=False`, so their questions never become feedback or training data.

        `history` given (a client that keeps its own conversation, like OpenAI's API), it replaces the remembered
        turns and the memory is left alone. `params` replaces the generation parameters for this answer.
        An exception raised by `on_piece` stops the generation (the model's stream is closed) and propagates."""
        timings: dict[str, float] = {}
        clock = _Clock(timings, log)
        remember = history is None
        history = self.memory.history(conversation_id) if history is None else list(history)
        params = params or self.params
        # One backend for the whole answer: an adapter switch meanwhile reaches the next answer, and the adapter
        # logged with this one is the adapter that wrote it.
        backend = serving(self.backend)
        answer = Answer(
            text="",
            conversation_id=conversation_id,
            model=backend.model_name,
            adapter=backend.adapter,
            backend=backend.name,
        )

        with clock("input_rails"):
            verdict_in = self.guard.check_input([*history, {"role": "user", "content": question}])
        answer.verdicts["input"] = _verdict_summary(verdict_in)
        masked = verdict_in.masked_text.strip()
        if not masked:
            answer.text = EMPTY_QUESTION
            return self._finish(answer, masked, [], user_id, channel, clock)
        if not verdict_in.allowed:
            answer.text, answer.blocked = verdict_in.message or "I can't help with that.", True
            return self._finish(answer, masked, [], user_id, channel, clock)
        if verdict_in.message:  # e.g. the topical rail's note on an off-topic question
            answer.notes.append(verdict_in.message)

        with clock("retrieval"):
            passages = self._retrieve(masked)
        with clock("computation"):
            computation, trusted = self._compute(masked)
        answer.computation = computation
        if computation.source == "calculator" and computation.text:
            # Plain arithmetic: the calculator's exact result is the answer; a model can only get it wrong.
            answer.text = f"{computation.text} [1]"
            answer.citations = _citations(answer.text, trusted)
            if remember:
                self.memory.add(conversation_id, masked, answer.text)
            if on_piece is not None:
                on_piece(answer.text)
            return self._finish(answer, masked, trusted, user_id, channel, clock)
        sources = trusted + [self._quote(p) for p in passages]

        with clock("prompt"):
            examples = self.selector.select(masked, self.options.fewshot_k)
            budget = backend.context_window() - params.max_new_tokens
            parts = build_messages(
                masked,
                [s.prompt_text for s in sources],
                examples,
                history,
                self.prompt_text,
                self.options.domain,
                backend.count_tokens,
                budget,
            )
        used = sources[: parts.passages_used]

        result = GenerationResult()
        with clock("generate"):
            raw = "".join(self._stream(backend, parts.messages, params, result, on_piece))
        answer.raw_text, answer.finish_reason = raw, result.finish_reason
        answer.usage = {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.new_tokens}
        if "first_token" in result.timings:
            timings["first_token"] = result.timings["first_token"]

        with clock("inform"):
            text = self._inform(raw, used, computation, answer)
        with clock("output_rails"):
            verdict_out = self.guard.check_output(masked, text, [s.plain_text for s in used])
        answer.verdicts["output"] = _verdict_summary(verdict_out)
        if not verdict_out.allowed:
            text, answer.blocked = verdict_out.message or "I can't share that answer.", True
        elif verdict_out.action == "masked":
            text = verdict_out.masked_text
        answer.text = text
        answer.citations = _citations(text, used)
        # The history the model sees next turn leaves out Inform's marks, or the model learns to write them.
        if remember:
            self.memory.add(conversation_id, masked, text.replace(UNVERIFIED_MARK, ""))
        return self._finish(answer, masked, used, user_id, channel, clock, parts.messages)

    def _retrieve(self, query: str) -> list[Passage]:
        if self.knowledge is None or self.options.retrieval_k == 0:
            return []
        from knowledge import KnowledgeError

        try:
            passages = self.knowledge.search(query, self.options.retrieval_k)
        except KnowledgeError as exc:
            log.warning("Retrieval failed, answering without passages: %s", exc)
            return []
        if self.options.drop_flagged_passages:
            passages = [p for p in passages if not p.injection_suspected]
        return passages

    def _quote(self, passage: Passage) -> _Source:
        return _Source(
            prompt_text=quote_passage(passage, passage.injection_suspected, self.prompt_text),
            plain_text=passage.text,
            source=passage.source,
            location=str(passage.location),
            passage_id=passage.id,
        )

    def _compute(self, question: str) -> tuple[ComputationResult, list[_Source]]:
        """The router's call; plain arithmetic is answered by the calculator, lookups by WolframAlpha."""
        computation: Computation = route(question)
        found = ComputationResult(kind=computation.kind, expression=computation.expression, value=computation.value)
        if computation.kind == "arithmetic" and computation.value is not None:
            found.source, found.status = "calculator", "ok"
            found.text = f"{computation.expression} = {format_number(computation.value)}"
        elif computation.kind in ("lookup", "word_problem") and self.wolfram is not None and self.wolfram.enabled:
            reply = self.wolfram.ask(question)
            found.source, found.status = "wolframalpha", reply.status
            if reply.status == "ok":
                asked = reply.pods.get("Input interpretation") or reply.pods.get("Input") or reply.query
                found.text = f"{asked}: {reply.text}"
        if found.text is None:
            return found, []
        label = "Calculator" if found.source == "calculator" else "WolframAlpha"
        source = _Source(f"({label}, trusted) {found.text}", found.text, label.lower(), "computed")
        return found, [source]

    def _stream(
        self,
        backend: Backend,
        messages: list[Message],
        params: GenerationParams,
        result: GenerationResult,
        on_piece: OnPiece | None,
    ) -> list[str]:
        pieces = []
        stream = backend.stream(messages, params, result)
        try:
            for piece in stream:
                pieces.append(piece)
                if on_piece is not None:
                    on_piece(piece)
        finally:
            # Closed at once, not when garbage collected: a caller that stopped listening (an HTTP client gone)
            # frees its place in the model's decode loop now.
            close = getattr(stream, "close", None)
            if close is not None:
                close()
        return pieces

    def _inform(self, raw: str, used: list[_Source], computation: ComputationResult, answer: Answer) -> str:
        text = raw.strip()
        if not text:
            return UNVERIFIED
        report = check_claims(
            text, [s.plain_text for s in used], self.embed, self.options.inform_threshold, self.options.inform_policy
        )
        answer.claims = [
            ClaimResult(text=c.text, verdict=c.verdict, support=c.support, passage=c.best_passage, reasons=c.reasons)
            for c in report.claims
        ]
        text = report.answer or _unverified(used)
        if computation.kind in ("arithmetic", "word_problem"):
            checks = check_equations(raw)
            computation.equations = [
                EquationResult(expression=c.expression, stated=c.stated, computed=c.computed, correct=c.correct)
                for c in checks
            ]
            wrong = [c for c in checks if not c.correct]
            if wrong:
                fixes = "; ".join(f"{c.expression} = {format_number(c.computed)}" for c in wrong)
                text += f"\n\nCorrection: {fixes}."
        if computation.kind == "arithmetic" and computation.value is not None:
            stated = final_number(raw)
            if stated is None or abs(stated - computation.value) > 1e-6 * max(1.0, abs(computation.value)):
                text += f"\n\nThe calculator gives {computation.expression} = {format_number(computation.value)}."
        return text

    def _finish(
        self,
        answer: Answer,
        masked: str,
        used: list[_Source],
        user_id: str,
        channel: str,
        clock: _Clock,
        prompt: Sequence[Message] = (),
    ) -> Answer:
        if not clock.log:
            answer.timings = clock.finish()
            return answer
        with clock("log"):
            record = InteractionRecord(
                question=masked,
                answer=answer.text,
                model=answer.model,
                adapter=answer.adapter,
                conversation_id=answer.conversation_id,
                user_id=user_id,
                channel=channel,
                passage_ids=[f"{s.source}#{s.passage_id}" if s.passage_id else s.source for s in used],
                timings=dict(clock.timings),
                verdicts=answer.verdicts,
                prompt=[{"role": m["role"], "content": m["content"]} for m in prompt],
            )
            try:
                answer.interaction_id = self.feedback.log(record)
            except sqlite3.Error as exc:
                log.warning("Could not log the interaction (the answer still goes out): %s", exc)
        answer.timings = clock.finish()
        return answer


class PipelineSession:
    """One conversation through the pipeline, for the terminal chat."""

    def __init__(self, pipeline: Pipeline, conversation_id: str = "terminal", channel: str = "terminal") -> None:
        self.pipeline = pipeline
        self.conversation_id = conversation_id
        self.channel = channel

    @property
    def backend(self) -> Backend:
        return self.pipeline.backend

    def ask(self, question: str, on_piece: OnPiece | None = None) -> Answer:
        return self.pipeline.answer(question, self.conversation_id, channel=self.channel, on_piece=on_piece)

    @property
    def load_timings(self) -> dict[str, float]:
        return self.pipeline.load_timings

    def reset(self) -> None:
        self.pipeline.reset(self.conversation_id)


class _Clock:
    """Times named stages of one answer."""

    def __init__(self, timings: dict[str, float], log: bool = True) -> None:
        self.timings = timings
        self.log = log
        self.started = time.perf_counter()

    def __call__(self, stage: str) -> _Stage:
        return _Stage(self.timings, stage)

    def finish(self) -> dict[str, float]:
        self.timings["total"] = time.perf_counter() - self.started
        return self.timings


class _Stage:
    def __init__(self, timings: dict[str, float], name: str) -> None:
        self.timings, self.name = timings, name

    def __enter__(self) -> None:
        self.started = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.timings[self.name] = self.timings.get(self.name, 0.0) + time.perf_counter() - self.started


def _verdict_summary(verdict: Verdict) -> dict[str, Any]:
    return {"action": verdict.action, "rail": verdict.rail, "rule": verdict.rule, "category": verdict.category}


def _unverified(used: list[_Source]) -> str:
    if not used:
        return UNVERIFIED
    closest = "\n".join(f"[{i}] {s.source}: {s.plain_text[:160]}" for i, s in enumerate(used, start=1))
    return f"{UNVERIFIED} The closest passages are:\n{closest}"


def _citations(text: str, used: list[_Source]) -> list[Citation]:
    numbers = sorted({int(n) for n in re.findall(r"\[(\d{1,2})\]", text)})
    return [
        Citation(
            number=n,
            source=used[n - 1].source,
            location=used[n - 1].location,
            snippet=used[n - 1].plain_text[:300],
            passage_id=used[n - 1].passage_id,
        )
        for n in numbers
        if 1 <= n <= len(used)
    ]
