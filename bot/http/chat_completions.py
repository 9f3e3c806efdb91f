"""OpenAI-compatible POST /v1/chat/completions and GET /v1/models, so existing clients can talk to the bot.

The last user message is the question and goes through the whole pipeline (rails, retrieval, Inform); the
user and assistant messages before it are its history (the client keeps the conversation, as with OpenAI).
A refusal by the rails is a normal assistant message with finish_reason "content_filter".

Streaming sends the answer once it has passed the output checks: an OpenAI client shows every delta it gets
and cannot take one back, so text the checks would change or block is never streamed to it. (POST /v1/answer
streams the text as the model writes it, with the checked answer as its last event.)
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from bot.http import sse
from bot.http.answers import disconnect_watch as _disconnect_watch
from bot.http.answers import error_event, final_answer
from bot.http.errors import error_responses
from bot.http.openai_schemas import (
    MODEL_ID,
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChunkChoice,
    Delta,
    DomainbotExtras,
    FinishReason,
    ModelCard,
    ModelList,
    Usage,
)
from bot.http.runner import ClientGone
from bot.http.state import CHANNEL, State, require_api_key
from bot.model.backend import Message
from bot.pipeline import Answer, OnPiece

router = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)], tags=["OpenAI-compatible"])


@router.get("/models", response_model=ModelList, responses=error_responses(401))
async def models(api: State) -> ModelList:
    """The one model this server answers with: the bot (its model and adapter are in /healthz)."""
    return ModelList(data=[ModelCard(id=MODEL_ID, created=int(api.started_at))])


@router.post(
    "/chat/completions",
    response_model=ChatCompletion,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "chat.completion, or chunks with stream=true."},
        **error_responses(401, 413, 422, 500),
    },
)
async def chat_completions(body: ChatCompletionRequest, request: Request, api: State) -> Response:
    """Answer the last user message through the pipeline, in OpenAI's chat.completion shape."""
    history = history_of(body, 2 * api.pipeline.memory.max_turns)
    question = body.messages[-1].text
    params = api.params(body.max_completion_tokens or body.max_tokens, body.temperature, body.top_p, body.stop_strings)
    # The client holds the conversation; this id only groups the logged interaction.
    conversation = f"{CHANNEL}-openai-{uuid.uuid4().hex}"

    def call(on_piece: OnPiece) -> Answer:
        return api.pipeline.answer(
            question,
            conversation,
            user_id=body.user or "",
            channel=CHANNEL,
            on_piece=on_piece,
            history=history,
            params=params,
        )

    events = api.runner.stream(None, call, _disconnect_watch(request))
    completion_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    if body.stream:
        include_usage = body.stream_options is not None and body.stream_options.include_usage
        return sse.response(chunks(events, completion_id, created, body.model, include_usage))
    answer = await final_answer(events)
    completion = ChatCompletion(
        id=completion_id,
        created=created,
        model=body.model,
        choices=[Choice(message=message_of(answer), finish_reason=finish_reason(answer))],
        usage=usage(answer),
        domainbot=extras(answer),
    )
    return JSONResponse(completion.model_dump())


def history_of(body: ChatCompletionRequest, most: int) -> list[Message]:
    """The user and assistant turns before the question, the most recent `most` of them."""
    turns: list[Message] = []
    for m in body.messages[:-1]:
        if m.role == "user" and m.text.strip():
            turns.append({"role": "user", "content": m.text})
        elif m.role == "assistant" and m.text.strip():
            turns.append({"role": "assistant", "content": m.text})
    return turns[len(turns) - most :] if most else []


def finish_reason(answer: Answer) -> FinishReason:
    if answer.blocked:
        return "content_filter"
    return "length" if answer.finish_reason == "length" else "stop"


def message_of(answer: Answer) -> AssistantMessage:
    return AssistantMessage(content=answer.text, refusal=answer.text if answer.blocked else None)


def usage(answer: Answer) -> Usage:
    prompt, completion = answer.usage.get("prompt_tokens", 0), answer.usage.get("completion_tokens", 0)
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


def extras(answer: Answer) -> DomainbotExtras:
    return DomainbotExtras(
        interaction_id=answer.interaction_id,
        blocked=answer.blocked,
        citations=[c.model_dump() for c in answer.citations],
        notes=answer.notes,
        adapter=answer.adapter,
    )


async def chunks(
    events: AsyncGenerator[str | Answer, None], completion_id: str, created: int, model: str, include_usage: bool
) -> AsyncIterator[str]:
    """The role, the checked answer, the finish reason (and usage, if asked), as chat.completion.chunk events."""

    def chunk(delta: Delta, reason: FinishReason | None = None, **more: object) -> str:
        choice = ChunkChoice(delta=delta, finish_reason=reason)
        data = ChatCompletionChunk(id=completion_id, created=created, model=model, choices=[choice], **more)  # type: ignore[arg-type]
        return sse.event(data.model_dump(exclude_none=True))

    yield chunk(Delta(role="assistant", content=""))
    try:
        async for item in events:
            if isinstance(item, Answer):
                answer = item
                break
        else:
            return
    except ClientGone:
        return
    except Exception as exc:
        yield sse.event(error_event(exc))
        yield sse.event("[DONE]")
        return
    finally:
        await events.aclose()
    if answer.text:
        yield chunk(Delta(content=answer.text))
    yield chunk(Delta(), finish_reason(answer), domainbot=extras(answer))
    if include_usage:
        tail = ChatCompletionChunk(id=completion_id, created=created, model=model, choices=[], usage=usage(answer))
        yield sse.event(tail.model_dump(exclude_none=True))
    yield sse.event("[DONE]")
