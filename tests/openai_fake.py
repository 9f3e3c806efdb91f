"""An OpenAI-compatible server on 127.0.0.1, as vLLM answers: `GET /v1/models`, and `POST /v1/chat/completions` /
`POST /v1/completions` streamed as server-sent events over chunked HTTP/1.1.

Replies are scripted with `enqueue`; a reply can also fail the way real servers do (an HTTP error with an
OpenAI-shaped body, an HTML gateway page, lines that are not JSON, chunks of the wrong shape, a slow start, a
connection cut mid-stream, a stall). Every request is recorded with its headers and body, so a test can check
what was sent and where the API key went.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any, Literal

from tests.loopback import QuietHandler, serve

Fault = Literal["status", "html", "garbage", "wrong_shape", "slow", "cut", "stall", "json", "no_finish"]


@dataclass
class Reply:
    """One scripted answer: the text pieces the server streams, how it ends, and an optional fault."""

    pieces: list[str]
    finish_reason: str = "stop"
    stop_reason: str | None = None
    usage: bool = True
    prompt_tokens: int = 17
    fault: Fault | None = None
    status: int = 500
    message: str = "Internal server error"
    delay: float = 0.0
    after: int = 1  # pieces sent before a 'cut' or 'stall'


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None


@dataclass
class FakeOpenAI:
    """`models` answer /v1/models; `api_key` set, requests without `Bearer <key>` get 401; `down` answers every
    request with 503."""

    models: list[dict[str, Any]] = field(default_factory=lambda: [{"id": "served-model", "max_model_len": 4096}])
    api_key: str | None = None
    replies: list[Reply] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    url: str = ""
    down: bool = False

    def enqueue(self, *replies: Reply | str) -> FakeOpenAI:
        """Queue replies; a plain string is streamed word by word."""
        for reply in replies:
            self.replies.append(Reply(words(reply)) if isinstance(reply, str) else reply)
        return self

    @property
    def completions(self) -> list[Request]:
        return [r for r in self.requests if r.method == "POST"]


def words(text: str) -> list[str]:
    parts = text.split(" ")
    return [parts[0], *(" " + p for p in parts[1:])]


def chunk(model: str, delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": 0, "logprobs": None, "finish_reason": finish}
    if delta is not None:
        choice["delta"] = delta
    choice.update(extra)
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0, "model": model, "choices": [choice]}


def unused_url() -> str:
    """A base URL on 127.0.0.1 where nothing listens: connections are refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


class _QuietServer(ThreadingHTTPServer):
    # A client that gave up on a slow reply closes its socket; the handler's broken pipe is expected there.
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass


@contextmanager
def fake_openai() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()

    class Handler(QuietHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._record(None)
            if self._refused():
                return
            if self.path.rstrip("/") != "/v1/models":
                self._json(404, {"object": "error", "message": f"Not Found: {self.path}", "code": 404})
                return
            data = [{"object": "model", "owned_by": "vllm", **m} for m in fake.models]
            self._json(200, {"object": "list", "data": data})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            self._record(body)
            if self._refused():
                return
            if self.path not in ("/v1/chat/completions", "/v1/completions"):
                self._json(404, {"object": "error", "message": f"Not Found: {self.path}", "code": 404})
                return
            if not fake.replies:
                self._json(500, {"error": {"message": "the fake has no scripted reply left", "type": "test"}})
                return
            reply = fake.replies.pop(0)
            time.sleep(reply.delay if reply.fault == "slow" else 0.0)
            if reply.fault == "status":
                self._json(reply.status, {"object": "error", "message": reply.message, "code": reply.status})
            elif reply.fault == "html":
                self.send_body(502, "text/html", b"<html><body><h1>502 Bad Gateway</h1></body></html>")
            elif reply.fault == "json":
                message = {"role": "assistant", "content": "".join(reply.pieces)}
                full = {"choices": [{"index": 0, "message": message, "finish_reason": reply.finish_reason}]}
                self.send_body(200, "application/json", json.dumps(full).encode())
            else:
                self._stream(body, reply)

        # --- helpers --------------------------------------------------------------------------------------

        def _stream(self, body: dict[str, Any], reply: Reply) -> None:
            model = str(body.get("model"))
            chat = self.path.endswith("chat/completions")
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if reply.fault == "garbage":
                self._event("this is not json")
                return self._end()
            if reply.fault == "wrong_shape":
                self._event(json.dumps({"result": "hello"}))
                return self._end()
            if chat:
                self._event(json.dumps(chunk(model, {"role": "assistant", "content": ""})))
            for index, piece in enumerate(reply.pieces):
                if reply.fault in ("cut", "stall") and index == reply.after:
                    if reply.fault == "stall":
                        time.sleep(reply.delay)
                    # Gone without the chunked terminator: the client sees an incomplete body.
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                delta = chunk(model, {"content": piece}) if chat else chunk(model, None, text=piece)
                self._event(json.dumps(delta))
            if reply.fault != "no_finish":
                final = chunk(model, {} if chat else None, reply.finish_reason, stop_reason=reply.stop_reason)
                if not chat:
                    final["choices"][0]["text"] = ""
                self._event(json.dumps(final))
            if reply.usage and body.get("stream_options", {}).get("include_usage"):
                usage = {"prompt_tokens": reply.prompt_tokens, "completion_tokens": len(reply.pieces)}
                usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
                self._event(json.dumps({"id": "chatcmpl-1", "choices": [], "usage": usage}))
            self._event("[DONE]")
            self._end()

        def _event(self, data: str) -> None:
            payload = f"data: {data}\n\n".encode()
            self.wfile.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")
            self.wfile.flush()

        def _end(self) -> None:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

        def _record(self, body: dict[str, Any] | None) -> None:
            headers = {k.lower(): v for k, v in self.headers.items()}
            fake.requests.append(Request(self.command, self.path, headers, body))

        def _refused(self) -> bool:
            if fake.down:
                self._json(503, {"object": "error", "message": "Service Unavailable", "code": 503})
                return True
            if fake.api_key is not None and self.headers.get("Authorization") != f"Bearer {fake.api_key}":
                error = {"message": "Incorrect API key provided.", "type": "invalid_request_error"}
                self._json(401, {"error": error})
                return True
            return False

        def _json(self, status: int, body: dict[str, Any]) -> None:
            self.send_body(status, "application/json", json.dumps(body).encode())

    with serve(Handler, _QuietServer) as server:
        fake.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        yield fake
