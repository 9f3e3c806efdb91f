"""Every error the HTTP API returns has one shape, OpenAI's: {"error": {"type", "message", "param", "code"}}.

Tracebacks and exception texts of unexpected failures stay in the server log; the client gets a short message.
"""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)
WHERE = ("body", "query", "path", "header", "cookie")
UNION_TAGS = {"str", "int", "float", "bool", "list", "dict", "none"}

# The `type` of an error by HTTP status, in OpenAI's words where it has them.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "request_too_large",
    415: "invalid_request_error",
    422: "invalid_request_error",
    500: "server_error",
    503: "overloaded_error",
}


class ErrorInfo(BaseModel):
    type: str
    message: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    error: ErrorInfo


class ApiError(Exception):
    """An error the client is told about: its HTTP status, a message saying what to do, the field at fault."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers = headers

    @property
    def body(self) -> ErrorBody:
        kind = ERROR_TYPES.get(self.status, "server_error" if self.status >= 500 else "invalid_request_error")
        return ErrorBody(error=ErrorInfo(type=kind, message=self.message, param=self.param, code=self.code))

    def response(self) -> JSONResponse:
        return JSONResponse(self.body.model_dump(), status_code=self.status, headers=self.headers)


def error_responses(*statuses: int) -> dict[int | str, dict[str, object]]:
    """OpenAPI `responses` entries for these statuses, all with the error body."""
    return {status: {"model": ErrorBody, "description": HTTPStatus(status).phrase} for status in statuses}


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return exc.response()


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return validation_error(exc).response()


def validation_error(exc: RequestValidationError) -> ApiError:
    """422 naming the first field at fault (dotted path inside the body) and what was expected there."""
    errors: list[dict[str, Any]] = [dict(e) for e in exc.errors()]
    first: dict[str, Any] = errors[0] if errors else {"loc": (), "msg": "invalid request", "type": ""}
    if first.get("type") == "json_invalid":
        detail = (first.get("ctx") or {}).get("error", "")
        message = f"The request body is not valid JSON ({detail}). Send one JSON object."
        return ApiError(422, message, code="json_invalid")
    param = ".".join(_field_path(first.get("loc", ()))) or None
    where = f"field '{param}'" if param else "the request body"
    more = f" ({len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return ApiError(422, f"Invalid {where}: {first.get('msg', 'invalid value')}{more}.", param=param)


def _field_path(loc: tuple[object, ...]) -> list[str]:
    """The field names and list positions of an error's location, without where it was (body, query) and
    without the union member pydantic tried ("literal['up','down']", "constrained-int", "str")."""
    parts = [str(part) for part in loc[1:]] if loc and loc[0] in WHERE else [str(part) for part in loc]
    return [p for p in parts if re.fullmatch(r"[A-Za-z_]\w*|\d+", p) and p not in UNION_TAGS]


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        message = f"No endpoint {request.url.path}. GET /openapi.json lists the endpoints."
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}."
    else:
        message = str(exc.detail)
    return ApiError(exc.status_code, message, headers=dict(exc.headers or {})).response()


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("Unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return internal_error(exc).response()


def internal_error(exc: BaseException) -> ApiError:
    """A 500 that names the kind of failure, never its text or traceback (they may quote internals)."""
    return ApiError(500, f"The server failed to handle the request ({type(exc).__name__}); its log has the details.")
