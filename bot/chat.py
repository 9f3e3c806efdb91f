"""A chat session: one conversation with the model, answered turn by turn."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from bot.config import Settings
from bot.conversation import Conversation
from bot.errors import DomainbotError
from bot.model.backend import Backend, GenerationParams, GenerationResult
from bot.model.swap import serving
from bot.model.text_formats import STOP_STRINGS

if TYPE_CHECKING:
    from bot.pipeline import Citation

OnPiece = Callable[[str], None]


@dataclass
class Reply:
    """One answer and what it took to produce it."""

    text: str
    model: str
    adapter: str | None
    backend: str
    finish_reason: str
    usage: dict[str, int] = field(default_factory=dict)
    # Seconds per stage: prompt (templating), first_token, generate, total; load when the model loaded for it.
    timings: dict[str, float] = field(default_factory=dict)
    # The model alone: nothing checks its text and no passages are cited.
    citations: list[Citation] = field(default_factory=list)

    @property
    def raw_text(self) -> str:
        return self.text

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def generation_params(settings: Settings) -> GenerationParams:
    return GenerationParams(
        max_new_tokens=settings.max_new_tokens,
        temperature=settings.temperature,
        top_p=settings.top_p,
        repetition_penalty=settings.repetition_penalty,
        seed=settings.seed,
        stop=STOP_STRINGS[settings.prompt_format],
    )


class ChatSession:
    """Keeps the conversation and turns each question into a streamed reply."""

    def __init__(
        self,
        backend: Backend,
        params: GenerationParams,
        system_prompt: str,
        history_max_tokens: int,
        load_timings: dict[str, float] | None = None,
    ) -> None:
        self.backend = backend
        # How long loading the model took, reported with the first reply of one-shot commands.
        self.load_timings = dict(load_timings or {})
        self.params = params
        self.history_max_tokens = history_max_tokens
        self.conversation = Conversation(system_prompt)

    @classmethod
    def from_settings(cls, settings: Settings) -> ChatSession:
        from bot.model.factory import open_backend

        opened = open_backend(settings, follow_registry=True)
        return cls(
            opened.backend,
            generation_params(settings),
            settings.system_prompt,
            settings.history_max_tokens,
            opened.timings,
        )

    def reset(self) -> None:
        self.conversation.reset()

    def ask(self, question: str, on_piece: OnPiece | None = None) -> Reply:
        """Answer `question` in the context of the conversation so far, passing each text piece to `on_piece`."""
        question = question.strip()
        if not question:
            raise DomainbotError("The question is empty: type a question, or /help for commands.")
        started = time.perf_counter()
        backend = serving(self.backend)  # one backend for the whole answer, even if the adapter switches meanwhile
        answer_room = min(self.params.max_new_tokens, backend.context_window() // 2)
        total_budget = backend.context_window() - answer_room
        messages = self.conversation.prompt(
            question, backend.count_tokens, self.history_max_tokens, total_budget
        )
        prompt_seconds = time.perf_counter() - started
        prompt_tokens = backend.count_tokens(messages)
        if prompt_tokens > total_budget:
            raise DomainbotError(
                f"The question is too long: its prompt takes {prompt_tokens} tokens and this model takes at most "
                f"{total_budget} while leaving room for the answer. Shorten it."
            )
        result = GenerationResult()
        pieces: list[str] = []
        for piece in backend.stream(messages, self.params, result):
            pieces.append(piece)
            if on_piece is not None:
                on_piece(piece)
        text = "".join(pieces).strip()
        self.conversation.add_exchange(question, text)
        timings = {"prompt": prompt_seconds + result.timings.get("prompt", 0.0)}
        timings.update({k: v for k, v in result.timings.items() if k != "prompt"})
        timings["total"] = time.perf_counter() - started
        return Reply(
            text=text,
            model=backend.model_name,
            adapter=backend.adapter,
            backend=backend.name,
            finish_reason=result.finish_reason,
            usage={"prompt_tokens": result.prompt_tokens, "completion_tokens": result.new_tokens},
            timings=timings,
        )
