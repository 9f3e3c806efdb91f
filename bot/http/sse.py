"""Server-sent events: the wire format, and a response that reaches the client piece by piece."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from fastapi.responses import StreamingResponse

# No proxy buffering or caching: each event must reach the client when it is sent.
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def event(data: object, name: str | None = None) -> str:
    """One event; `data` is sent as compact JSON (a str as it is), so it fits on one `data:` line."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    head = f"event: {name}\n" if name else ""
    return head + "".join(f"data: {line}\n" for line in text.split("\n")) + "\n"


def response(events: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(events, media_type="text/event-stream", headers=HEADERS)
