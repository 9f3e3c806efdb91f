"""The FastAPI application over one pipeline: routes, key checks, body limits, one error shape."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from bot import __version__
from bot.http import answers, chat_completions, health, kb
from bot.http.config import HttpConfig
from bot.http.errors import install_error_handlers
from bot.http.limits import BodyLimitMiddleware
from bot.http.runner import AnswerRunner
from bot.http.state import ApiState
from bot.pipeline import Pipeline

UPLOAD_PATH = "/v1/kb/documents"
DESCRIPTION = """\
domainbot answers questions in its domain with cited passages, guardrails and fact checks.

Send `Authorization: Bearer <DOMAINBOT_API_KEY>`; the knowledge-base endpoints take DOMAINBOT_ADMIN_KEY.
Every error has the body `{"error": {"type", "message", "param", "code"}}`.
"""


def create_app(pipeline: Pipeline, config: HttpConfig) -> FastAPI:
    """The API over `pipeline`. The pipeline is shared by `config.workers` answering threads."""
    runner = AnswerRunner(config.workers)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        runner.close()

    app = FastAPI(title="domainbot", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    app.state.api = ApiState(pipeline=pipeline, config=config, runner=runner)
    install_error_handlers(app)

    def limit_for(path: str) -> tuple[int, str]:
        if path == UPLOAD_PATH:
            return config.max_upload_bytes, "Documents may be as large as DOMAINBOT_MAX_DOCUMENT_MB."
        return config.max_body_bytes, "Send a smaller request (the server's limit is DOMAINBOT_HTTP_MAX_BODY_KB)."

    app.add_middleware(BodyLimitMiddleware, limit_for=limit_for)
    for module in (answers, chat_completions, kb, health):
        app.include_router(module.router)
    return app
