"""What every request handler reaches: the pipeline, the settings, the answering pool; and the key checks."""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials

from bot.http.auth import bearer, check_admin_key, check_api_key
from bot.http.config import HttpConfig
from bot.http.runner import AnswerRunner
from bot.model.backend import GenerationParams
from bot.pipeline import Pipeline

CHANNEL = "http"


@dataclass
class ApiState:
    pipeline: Pipeline
    config: HttpConfig
    runner: AnswerRunner
    started: float = field(default_factory=time.monotonic)
    started_at: float = field(default_factory=time.time)
    # One upload at a time: a second version of a file must not move the first aside while it is being added.
    uploads: threading.Lock = field(default_factory=threading.Lock)

    def params(
        self,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        stop: tuple[str, ...] = (),
    ) -> GenerationParams:
        """The server's generation parameters with a request's choices; max_tokens never above the server's."""
        base = self.pipeline.params
        changes: dict[str, object] = {}
        if max_tokens is not None:
            changes["max_new_tokens"] = min(max_tokens, base.max_new_tokens)
        if temperature is not None:
            changes["temperature"] = temperature
        if top_p is not None:
            changes["top_p"] = top_p
        if stop:
            changes["stop"] = (*base.stop, *stop)
        return dataclasses.replace(base, **changes) if changes else base  # type: ignore[arg-type]


def api_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state


State = Annotated[ApiState, Depends(api_state)]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]


def require_api_key(api: State, credentials: Credentials) -> None:
    check_api_key(credentials.credentials if credentials else None, api.config.api_key, api.config.admin_key)


def require_admin_key(api: State, credentials: Credentials) -> None:
    check_admin_key(credentials.credentials if credentials else None, api.config.admin_key)
