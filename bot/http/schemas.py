"""Request and response bodies of the domainbot endpoints (the OpenAI-compatible ones are in `openai_schemas`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from knowledge import SearchMode

MAX_QUESTION_CHARS = 20_000
Identifier = Annotated[str, Field(max_length=200)]


class AnswerRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS, description="The user's question.")
    conversation_id: Identifier | None = Field(
        None,
        description="Continue this conversation (its earlier turns are the history); omitted, a new one starts "
        "and the answer carries its id.",
    )
    user: Identifier = Field("", description="Who asks, as your system names them (logged with the interaction).")
    stream: bool = Field(
        False,
        description="Server-sent events: `piece` events with the text as it is generated, then one `answer` event "
        "with the whole Answer (its `text` is authoritative: the checks may change what was streamed), "
        "then `done`.",
    )
    max_tokens: int | None = Field(
        None, ge=1, description="Most tokens in the answer, up to the server's DOMAINBOT_MAX_NEW_TOKENS."
    )
    temperature: float | None = Field(None, ge=0.0, le=2.0, description="Sampling temperature; 0 is greedy.")


Score = Annotated[int, Field(ge=1, le=5)]


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    interaction_id: str = Field(min_length=1, max_length=64, description="`interaction_id` of the rated answer.")
    rating: Literal["up", "down"] | Score | None = Field(
        None, description="'up' or 'down', or a score from 1 to 5 (4 and 5 count as up, 1 to 3 as down)."
    )
    correction: str | None = Field(
        None, min_length=1, max_length=MAX_QUESTION_CHARS, description="The answer that would have been right."
    )
    user: Identifier = Field("", description="Who rates; a rater's new rating replaces their old one.")

    @field_validator("rating", mode="before")
    @classmethod
    def _up_down_or_score(cls, value: object) -> object:
        # One clear message instead of one per member of the union.
        if value is None or value in ("up", "down") or (type(value) is int and 1 <= value <= 5):
            return value
        raise ValueError(f"expected 'up', 'down' or a score from 1 to 5, got {value!r}")

    @model_validator(mode="after")
    def _something_to_store(self) -> FeedbackRequest:
        if self.rating is None and self.correction is None:
            raise ValueError("expected a rating, a correction or both; got neither")
        return self


class FeedbackResponse(BaseModel):
    interaction_id: str
    rating: Literal[-1, 1] | None = None
    score: int | None = None
    correction_stored: bool = False


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"
    version: str
    model: str
    adapter: str | None
    backend: str
    kb_chunks: int | None = Field(description="Passages in the knowledge base; null when it runs without one.")
    uptime_seconds: float
    workers: int


class DocumentInfo(BaseModel):
    source: str
    name: str
    title: str
    kind: str
    chunks: int
    characters: int
    added_at: str


class DocumentAdded(BaseModel):
    name: str
    source: str
    outcome: Literal["added", "unchanged", "replaced"]
    chunks: int


class DocumentRemoved(BaseModel):
    source: str
    chunks: int


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS)
    k: int = Field(5, ge=1, le=100, description="How many passages.")
    mode: SearchMode = "hybrid"


class PassageOut(BaseModel):
    id: str
    source: str
    title: str
    location: str
    section: str | None
    page: int | None
    offsets: dict[str, int]
    text: str
    score: float
    injection_rules: list[str]
    injection_suspected: bool
