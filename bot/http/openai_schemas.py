"""OpenAI's chat-completion shapes, as much of them as a chat bot over one pipeline can honour.

Fields OpenAI clients send that do not apply here (penalties, tools, logit_bias...) are accepted and ignored;
fields that would change the meaning of the answer and cannot be honoured (n > 1) are refused.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bot.http.schemas import MAX_QUESTION_CHARS

MODEL_ID = "domainbot"
FinishReason = Literal["stop", "length", "content_filter"]


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None

    @property
    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(MODEL_ID, max_length=200, description="Echoed back; this server serves one model.")
    messages: list[ChatMessage] = Field(
        min_length=1,
        description="The conversation; the last user message is the question, the user and assistant turns "
        "before it are its history. System messages are ignored: the bot keeps its own instructions.",
    )
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    n: int = Field(1, ge=1, le=1, description="Only one choice per request.")
    user: str | None = Field(None, max_length=200)

    @field_validator("messages")
    @classmethod
    def _ends_with_a_question(cls, messages: list[ChatMessage]) -> list[ChatMessage]:
        if messages[-1].role != "user":
            raise ValueError(f"expected the last message to be the user's question, got a {messages[-1].role!r} one")
        if not messages[-1].text.strip():
            raise ValueError("expected the last user message to have text")
        if len(messages[-1].text) > MAX_QUESTION_CHARS:
            raise ValueError(f"expected a question of at most {MAX_QUESTION_CHARS} characters")
        return messages

    @field_validator("stop")
    @classmethod
    def _at_most_four(cls, stop: str | list[str] | None) -> str | list[str] | None:
        if isinstance(stop, list) and len(stop) > 4:
            raise ValueError(f"expected at most 4 stop sequences, got {len(stop)}")
        return stop

    @property
    def stop_strings(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return tuple(s for s in ([self.stop] if isinstance(self.stop, str) else self.stop) if s)


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    refusal: str | None = None


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: FinishReason
    logprobs: None = None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class DomainbotExtras(BaseModel):
    """What the bot adds to OpenAI's shape: how to rate the answer, and what it cites."""

    interaction_id: str | None
    blocked: bool
    citations: list[dict[str, object]]
    notes: list[str]
    adapter: str | None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    domainbot: DomainbotExtras


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: FinishReason | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    domainbot: DomainbotExtras | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "domainbot"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
