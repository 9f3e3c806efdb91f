"""POST /v1/answer (the pipeline's Answer, or its pieces as server-sent events) and POST /v1/feedback."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from bot.errors import DomainbotError
from bot.feedback import UnknownInteraction
from bot.http import sse
from bot.http.errors import ApiError, error_responses, internal_error
from bot.http.runner import ClientGone
from bot.http.schemas import AnswerRequest, FeedbackRequest, FeedbackResponse
from bot.http.state import CHANNEL, ApiState, State, require_api_key
from bot.pipeline import Answer, OnPiece

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)], tags=["answers"])
CLIENT_CLOSED = 499  # nginx's status for a request whose client left before the answer


def disconnect_watch(request: Request) -> Any:
    """Returns once the client has closed the connection (called after the body has been read)."""

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    return disconnected


async def final_answer(events: AsyncGenerator[str | Answer, None]) -> Answer:
    """Drain a runner stream to its Answer; a failed pipeline becomes a 500 with a short message."""
    try:
        async for item in events:
            if isinstance(item, Answer):
                return item
    except ClientGone:
        raise ApiError(CLIENT_CLOSED, "The client closed the connection before the answer was ready.") from None
    except ApiError:
        raise
    except DomainbotError as exc:
        raise ApiError(500, f"The bot could not answer: {exc}") from None
    except Exception as exc:
        log.error("The pipeline failed", exc_info=exc)
        raise internal_error(exc) from None
    finally:
        await events.aclose()
    raise ApiError(500, "The answer ended without a result.")


def error_event(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, DomainbotError):
        return ApiError(500, f"The bot could not answer: {exc}").body.model_dump()
    log.error("The pipeline failed while streaming", exc_info=exc)
    return internal_error(exc).body.model_dump()


async def answer_events(events: AsyncGenerator[str | Answer, None]) -> AsyncIterator[str]:
    """`piece` events while the model writes, one `answer` event with the checked Answer, then `done`.
    A failure after the events began is an `error` event with the usual error body."""
    try:
        async for item in events:
            if isinstance(item, Answer):
                yield sse.event(item.to_json(), "answer")
            else:
                yield sse.event({"text": item}, "piece")
    except ClientGone:
        return
    except Exception as exc:
        yield sse.event(error_event(exc), "error")
    finally:
        await events.aclose()
    yield sse.event("[DONE]", "done")


@router.post(
    "/answer",
    response_model=Answer,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "The Answer, or its events with stream=true."},
        **error_responses(401, 413, 422, 500),
    },
    summary="Answer a question through the whole pipeline",
)
async def answer(body: AnswerRequest, request: Request, api: State) -> Response:
    """Rails, retrieval, generation, Inform: the same answer the terminal and Telegram give, as JSON."""
    conversation = body.conversation_id or f"http-{uuid.uuid4().hex}"
    params = api.params(body.max_tokens, body.temperature)

    def call(on_piece: OnPiece) -> Answer:
        return api.pipeline.answer(
            body.question, conversation, user_id=body.user, channel=CHANNEL, on_piece=on_piece, params=params
        )

    events = api.runner.stream(conversation, call, disconnect_watch(request))
    if body.stream:
        return sse.response(answer_events(events))
    result = await final_answer(events)
    return JSONResponse(result.to_json())


@router.post(
    "/feedback",
    response_model=FeedbackResponse,
    responses=error_responses(401, 404, 413, 422),
    summary="Rate an answer or correct it",
)
async def feedback(body: FeedbackRequest, api: State) -> FeedbackResponse:
    """Stored like a rating in Telegram or the terminal: it becomes training data for the next LoRA round."""
    return await run_in_threadpool(store_feedback, api, body)


def store_feedback(api: ApiState, body: FeedbackRequest) -> FeedbackResponse:
    store = api.pipeline.feedback
    stored = FeedbackResponse(interaction_id=body.interaction_id)
    try:
        if body.rating is not None:
            if isinstance(body.rating, str):
                stored.rating = 1 if body.rating == "up" else -1
            else:
                stored.rating, stored.score = (1 if body.rating >= 4 else -1), body.rating
            store.rate(body.interaction_id, stored.rating, stored.score, rater_id=body.user)
        if body.correction is not None:
            # Masked like every logged question: a correction becomes training data.
            store.correct(body.interaction_id, api.pipeline.guard.mask_pii(body.correction), rater_id=body.user)
            stored.correction_stored = True
    except UnknownInteraction as exc:
        raise ApiError(404, str(exc), param="interaction_id") from None
    except DomainbotError as exc:
        raise ApiError(422, str(exc)) from None
    return stored
