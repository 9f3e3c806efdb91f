"""A limit on request bodies, enforced before they are read: 413 with the API's error body.

A declared Content-Length over the limit is refused before a byte of the body is read; a body without one
(chunked) is counted as it arrives and refused the moment it passes the limit. The limit depends on the path:
document uploads may be as large as the knowledge base accepts, everything else is small JSON.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot.http.errors import ApiError

LimitFor = Callable[[str], tuple[int, str]]


class BodyTooLarge(Exception):
    """Raised into the app when a chunked body passes the limit; the 413 has already been sent."""


class BodyLimitMiddleware:
    """`limit_for(path)` gives the most bytes a body may have there, and what to tell a client that sends more."""

    def __init__(self, app: ASGIApp, limit_for: LimitFor) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, advice = self.limit_for(scope["path"])
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _refuse(scope, receive, send, int(declared), limit, advice)
            return

        received = 0
        refused = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    if not started and not refused:
                        refused = True
                        await _refuse(scope, receive, send, None, limit, advice)
                    raise BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the app's own reaction to BodyTooLarge: the client already has its 413
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            # Once refused, whatever the app made of BodyTooLarge (frameworks wrap it) ends here.
            if not refused:
                raise


async def _refuse(scope: Scope, receive: Receive, send: Send, size: int | None, limit: int, advice: str) -> None:
    sent = f"{size:,} bytes" if size is not None else f"more than {limit:,} bytes"
    error = ApiError(413, f"The request body is {sent}; the limit here is {limit:,} bytes. {advice}".strip())
    await error.response()(scope, receive, send)
