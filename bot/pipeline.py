"""The answer pipeline every front end calls: one question in, one checked, cited, logged answer out.

    input rails -> retrieval -> computation -> grounding -> prompt -> generation (streamed) -> Inform
    -> (extractive fallback) -> output rails -> log

Grounding ranks the passage sentences by how well they answer the question. With the "drop" or "refuse"
policy, a question no sentence answers gets an honest "not found" with the closest passages, without spending
time on generation; and when Inform leaves nothing of the model's answer standing (a small model often writes
fluent text the passages do not support), the answer is made of the best passage sentences, cited, instead.
`Answer.path` says which of these produced the text.

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
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from bot.feedback import FeedbackStore, InteractionRecord
from bot.memory import ConversationMemory
from bot.model.backend import Backend, GenerationParams, GenerationResult, Message
from bot.model.swap import serving
from bot.prompting import ExampleSelector, FewShotExample, PromptText, build_messages, quote_passage
from knowledge.calculator import Computation, check_equations, final_number, format_number, route
from knowledge.extractive import (
    SentenceMatch,
    adds_to,
    answer_relevance,
    drop_headings,
    extractive_answer,
    rank_sentences,
)
from knowledge.inform import UNVERIFIED_MARK, InformReport, Policy, check_claims, trim_repetition

if TYPE_CHECKING:
    import numpy as np

    from bot.config import Settings
    from guardrails import Guardrails, Verdict
    from knowledge import KnowledgeBase, Passage
    from knowledge.wolfram import WolframClient

log = logging.getLogger(__name__)

OnPiece = Callable[[str], None]
EMPTY_QUESTION = "Please type a question — I did not get any text."
NOT_FOUND = "I could not find this in the knowledge base."
# Passages whose best sentence scores this far below the relevance threshold stay out of the prompt: a small
# model copies whatever it is shown, relevant or not.
PROMPT_MARGIN = 0.1
# Which stage wrote the answer's text: the model (checked by Inform), the passages' own sentences, the honest
# "not found", the calculator, a rail's refusal, or the note that the question was empty.
AnswerPath = Literal["generated", "extractive", "not_found", "calculator", "blocked", "empty"]


class Citation(BaseModel):
    number: int
    source: str
    location: str
    snippet: str
    passage_id: str | None = None


class ClaimResult(BaseModel):
    """One sentence Inform checked: the model's (kept in the answer or dropped) or an extracted one."""

    text: str
    verdict: str
    support: float
    passage: int | None = None
    reasons: list[str] = Field(default_factory=list)
    kept: bool = True


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
    path: AnswerPath = "generated"
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
    # The policy while a LoRA adapter serves (None: `inform_policy`). An adapter from the feedback loop has
    # learned people's corrections, facts the knowledge base may not hold: dropping every claim the passages
    # do not support would throw away what the loop taught it.
    inform_policy_with_adapter: Policy | None = None
    inform_threshold: float = 0.5
    # Grounding score a passage sentence needs to count as answering the question.
    relevance_threshold: float = 0.52
    # When Inform leaves no supported claim, answer with the best passage sentences (False: say "not found").
    extractive_fallback: bool = True
    # Passages flagged as likely prompt injection are quoted inside a fence (False) or left out (True).
    drop_flagged_passages: bool = False


@dataclass
class _Turn:
    """One answer in the making: what it needs on every way out (logging, remembering, streaming)."""

    answer: Answer
    clock: _Clock
    user_id: str
    channel: str
    remember: bool
    on_piece: OnPiece | None
    masked: str = ""


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

        turn = _Turn(answer, clock, user_id, channel, remember, on_piece)

        with clock("input_rails"):
            verdict_in = self.guard.check_input([*history, {"role": "user", "content": question}])
        answer.verdicts["input"] = _verdict_summary(verdict_in)
        masked = turn.masked = verdict_in.masked_text.strip()
        if not masked:
            answer.text, answer.path = EMPTY_QUESTION, "empty"
            return self._finish(turn, [])
        if not verdict_in.allowed:
            answer.text, answer.blocked, answer.path = verdict_in.message or "I can't help with that.", True, "blocked"
            return self._finish(turn, [])
        if verdict_in.message:  # e.g. the topical rail's note on an off-topic question
            answer.notes.append(verdict_in.message)

        with clock("retrieval"):
            passages = self._retrieve(masked)
        with clock("computation"):
            computation, trusted = self._compute(masked)
        answer.computation = computation
        if computation.source == "calculator" and computation.text:
            # Plain arithmetic: the calculator's exact result is the answer; a model can only get it wrong.
            answer.text, answer.path = f"{computation.text} [1]", "calculator"
            return self._deliver(turn, trusted)

        # "annotate" trusts the model to answer and marks what does not hold up; "drop" and "refuse" keep only
        # grounded text, so they also keep unrelated passages out of the prompt and skip hopeless generations.
        policy = self._policy(backend)
        strict = policy != "annotate"
        with clock("grounding"):
            ranked = rank_sentences(masked, [p.text for p in passages], self.embed, [p.score for p in passages])
            floor = self.options.relevance_threshold - PROMPT_MARGIN if strict else 0.0
            kept, matches = _relevant(passages, ranked, floor)
            # Trusted computed passages come first in the numbering, and answer the question by construction.
            matches = [replace(m, passage=m.passage + len(trusted)) for m in matches]
        answers_question = bool(trusted) or bool(matches and matches[0].score >= self.options.relevance_threshold)
        if strict and not answers_question:
            # Whatever the model wrote here, the policy would drop it as unsupported: say so now, and quickly.
            closest = [self._quote(p) for p in passages]
            answer.text, answer.path = _not_found(closest), "not_found"
            return self._deliver(turn, closest)
        sources = trusted + [self._quote(p) for p in kept]

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
        params = self._answer_params(params)

        result = GenerationResult()
        with clock("generate"):
            raw = "".join(self._stream(backend, parts.messages, params, result, on_piece))
        answer.raw_text, answer.finish_reason = raw, result.finish_reason
        answer.usage = {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.new_tokens}
        if "first_token" in result.timings:
            timings["first_token"] = result.timings["first_token"]

        with clock("inform"):
            text = self._inform(masked, raw, used, computation, answer, policy)
        if not text:
            with clock("extractive"):
                text = self._fallback(matches, sources, answer)
            # The fallback may cite passages the prompt had no room for.
            used = sources
        with clock("output_rails"):
            verdict_out = self.guard.check_output(masked, text, [s.plain_text for s in used])
        answer.verdicts["output"] = _verdict_summary(verdict_out)
        if not verdict_out.allowed:
            text, answer.blocked, answer.path = verdict_out.message or "I can't share that answer.", True, "blocked"
        elif verdict_out.action == "masked":
            text = verdict_out.masked_text
        answer.text = text
        answer.citations = _citations(text, used)
        # The history the model sees next turn leaves out Inform's marks, or the model learns to write them.
        if remember:
            self.memory.add(conversation_id, masked, text.replace(UNVERIFIED_MARK, ""))
        return self._finish(turn, used, parts.messages)

    def _deliver(self, turn: _Turn, used: list[_Source]) -> Answer:
        """Send an answer that no model wrote: cite, remember, stream it whole, log."""
        answer = turn.answer
        answer.citations = _citations(answer.text, used)
        if turn.remember:
            self.memory.add(answer.conversation_id, turn.masked, answer.text)
        if turn.on_piece is not None:
            turn.on_piece(answer.text)
        return self._finish(turn, used)

    def _answer_params(self, params: GenerationParams) -> GenerationParams:
        """The generation parameters with the prompt file's limits for answers applied."""
        limits = self.prompt_text.generation
        return replace(
            params,
            max_new_tokens=min(params.max_new_tokens, limits.max_new_tokens or params.max_new_tokens),
            repetition_penalty=limits.repetition_penalty or params.repetition_penalty,
            stop=(*params.stop, *(s for s in limits.stop if s not in params.stop)),
        )

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

    def _policy(self, backend: Backend) -> Policy:
        if backend.adapter is not None and self.options.inform_policy_with_adapter is not None:
            return self.options.inform_policy_with_adapter
        return self.options.inform_policy

    def _inform(
        self,
        question: str,
        raw: str,
        used: list[_Source],
        computation: ComputationResult,
        answer: Answer,
        policy: Policy,
    ) -> str:
        """The model's answer after Inform's `policy`; "" when nothing of it stands (the fallback answers then)."""
        text = raw.strip()
        if policy != "annotate":
            text = drop_headings(trim_repetition(text), [s.plain_text for s in used])
        if not text:
            return ""
        report = check_claims(text, [s.plain_text for s in used], self.embed, self.options.inform_threshold, policy)
        answer.claims = _claim_results(report, kept=True)
        if policy == "drop":
            for claim in answer.claims:
                claim.kept = claim.verdict != "unsupported"
        answering = [c for c in report.claims if c.verdict == "supported" and adds_to(question, c.text)]
        if policy != "annotate" and not answering:
            # Nothing the passages support is left beyond fragments, abstentions and restatements of the
            # question: not an answer.
            return ""
        text = report.answer
        if policy != "annotate" and answer_relevance(question, text, self.embed) < self.options.relevance_threshold:
            # Supported by the passages, but not an answer to this question.
            return ""
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

    def _fallback(self, matches: list[SentenceMatch], sources: list[_Source], answer: Answer) -> str:
        """The passages' best sentences, cited and checked; or "not found" with the closest passages. Nothing
        the model wrote is kept."""
        for claim in answer.claims:
            claim.kept = False
        extract = ""
        if self.options.extractive_fallback:
            extract = extractive_answer(matches, self.options.relevance_threshold)
        if not extract:
            answer.path = "not_found"
            return _not_found(sources)
        answer.path = "extractive"
        report = check_claims(
            extract, [s.plain_text for s in sources], self.embed, self.options.inform_threshold, "annotate"
        )
        answer.claims += _claim_results(report, kept=True)
        return report.answer

    def _finish(self, turn: _Turn, used: list[_Source], prompt: Sequence[Message] = ()) -> Answer:
        """Log the interaction (unless this answer is not to be logged) and stamp the timings."""
        answer, clock = turn.answer, turn.clock
        if not clock.log:
            answer.timings = clock.finish()
            return answer
        with clock("log"):
            record = InteractionRecord(
                question=turn.masked,
                answer=answer.text,
                model=answer.model,
                adapter=answer.adapter,
                conversation_id=answer.conversation_id,
                user_id=turn.user_id,
                channel=turn.channel,
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


def _not_found(used: list[_Source]) -> str:
    """The honest answer, one line; the closest passages are cited, so every front end lists them."""
    if not used:
        return NOT_FOUND
    numbers = [f"[{i}]" for i in range(1, len(used) + 1)]
    closest = numbers[0] if len(numbers) == 1 else f"{', '.join(numbers[:-1])} and {numbers[-1]}"
    return f"{NOT_FOUND} The closest passages are {closest}."


def _relevant(
    passages: list[Passage], matches: list[SentenceMatch], floor: float
) -> tuple[list[Passage], list[SentenceMatch]]:
    """The passages with a sentence scoring at least `floor`, in retrieval order, and their sentences renumbered
    to match."""
    best: dict[int, float] = {}
    for match in matches:
        best[match.passage] = max(best.get(match.passage, 0.0), match.score)
    numbers = [n for n in range(1, len(passages) + 1) if best.get(n, 0.0) >= floor]
    renumber = {old: new for new, old in enumerate(numbers, start=1)}
    kept = [replace(m, passage=renumber[m.passage]) for m in matches if m.passage in renumber]
    return [passages[n - 1] for n in numbers], kept


def _claim_results(report: InformReport, kept: bool) -> list[ClaimResult]:
    return [
        ClaimResult(
            text=c.text, verdict=c.verdict, support=c.support, passage=c.best_passage, reasons=c.reasons, kept=kept
        )
        for c in report.claims
    ]


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
