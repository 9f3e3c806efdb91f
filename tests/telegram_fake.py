"""A Bot API server on 127.0.0.1 for tests and benchmarks: Telegram's JSON protocol over real HTTP.

The bot under test talks to it through python-telegram-bot's `base_url` / `base_file_url`, exactly as it
would talk to api.telegram.org. The server serves getMe, getUpdates (long polling), sendMessage,
editMessageText, answerCallbackQuery, sendChatAction, getFile and file downloads, sendDocument, setMyCommands,
deleteWebhook and setWebhook; it queues the updates a test makes (messages, documents, button presses),
records every call, and answers chosen calls with an error (429 with `retry_after`, 500, a 400 description).
It checks what Telegram checks: the token, HTML formatting, message length, stale callback queries.
"""

from __future__ import annotations

import itertools
import json
import re
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from html import unescape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

MAX_MESSAGE_CHARS = 4096
MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024
# Parameters PTB sends as plain strings; every other form value is JSON.
STRING_PARAMS = {
    "text",
    "caption",
    "parse_mode",
    "callback_query_id",
    "file_id",
    "action",
    "url",
    "secret_token",
    "language_code",
    "business_connection_id",
    "emoji",
}
HTML_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "span": "spoiler",
    "tg-spoiler": "spoiler",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}
FLOOD_METHODS = {"sendMessage", "editMessageText", "sendDocument"}
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1 never goes through a proxy


class ApiError(Exception):
    def __init__(self, status: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.status, self.description, self.retry_after = status, description, retry_after


@dataclass
class ApiCall:
    method: str
    params: dict[str, Any]
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    at: float = 0.0
    status: int = 200


@dataclass
class _Failure:
    method: str
    status: int
    description: str
    retry_after: int | None
    times: int


@dataclass
class _File:
    file_id: str
    unique_id: str
    path: str
    content: bytes
    size: int


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def parse_html(text: str) -> tuple[str, list[dict[str, Any]]]:
    """Telegram's HTML parse mode: the visible text and its entities, or ApiError as Telegram words it."""
    out: list[str] = []
    entities: list[dict[str, Any]] = []
    stack: list[tuple[str, int]] = []
    position = 0
    for match in re.finditer(r"<[^<>]*>|&[^;&<>\s]*;|[^<&]+|[<&]", text):
        token = match.group()
        offset = len(text[: match.start()].encode())
        if token.startswith("</"):
            name = token[2:-1].strip().lower()
            if not stack or stack[-1][0] != name:
                expected = f'"</{stack[-1][0]}>"' if stack else "nothing"
                raise ApiError(
                    400,
                    f"Bad Request: can't parse entities: Unmatched end tag at byte offset {offset}, "
                    f'expected {expected}, found "{token}"',
                )
            opened, start = stack.pop()
            entities.append({"type": HTML_TAGS[opened], "offset": start, "length": position - start})
        elif token.startswith("<"):
            name_match = re.match(r"<\s*([a-zA-Z][\w-]*)", token)
            name = name_match.group(1).lower() if name_match else ""
            if name not in HTML_TAGS:
                raise ApiError(
                    400,
                    f'Bad Request: can\'t parse entities: Unsupported start tag "{name or token}" at byte offset '
                    f"{offset}",
                )
            stack.append((name, position))
        elif token.startswith("&"):
            if not re.fullmatch(r"&(lt|gt|amp|quot|#\d+|#x[0-9a-fA-F]+);", token):
                raise ApiError(
                    400,
                    f"Bad Request: can't parse entities: Character entity expected at byte offset {offset}",
                )
            out.append(unescape(token))
            position += utf16_len(out[-1])
        else:
            out.append(token)
            position += utf16_len(token)
    if stack:
        raise ApiError(
            400, f"Bad Request: can't parse entities: Can't find end tag corresponding to start tag {stack[-1][0]}"
        )
    return "".join(out), sorted(entities, key=lambda e: e["offset"])


def auto_entities(text: str) -> list[dict[str, Any]]:
    """The entities Telegram adds to a typed message: a leading /command and @mentions."""
    found = []
    command = re.match(r"/[A-Za-z0-9_]+(@[A-Za-z0-9_]+)?", text)
    if command:
        found.append({"type": "bot_command", "offset": 0, "length": utf16_len(command.group())})
    for mention in re.finditer(r"(?<![\w/])@[A-Za-z0-9_]{5,}", text):
        found.append(
            {"type": "mention", "offset": utf16_len(text[: mention.start()]), "length": utf16_len(mention.group())}
        )
    return found


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    # socketserver's default backlog of 5 drops connections a busy bot opens at once (each retried a second or
    # more later); a real Bot API server takes them.
    request_queue_size = 1024

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-answer (a long poll cancelled at shutdown) is normal, not an error.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakeBotApi:
    """The server's state, shared by its request threads and the test (under `lock`, a Condition)."""

    def __init__(self, token: str, username: str = "domainbot_test_bot") -> None:
        self.token = token
        self.bot_user = {
            "id": 7_000_001,
            "is_bot": True,
            "first_name": "domainbot",
            "username": username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }
        self.lock = threading.Condition()
        self.updates: list[dict[str, Any]] = []
        self.update_ids = itertools.count(1)
        self.message_ids = itertools.count(1)
        self.ids = itertools.count(1)
        self.calls: list[ApiCall] = []
        self.chats: dict[int, dict[str, Any]] = {}
        self.messages: dict[tuple[int, int], dict[str, Any]] = {}  # the bot's
        self.user_messages: dict[tuple[int, int], dict[str, Any]] = {}
        self.files: dict[str, _File] = {}
        self.open_queries: set[str] = set()
        self.failures: list[_Failure] = []
        self.commands: dict[str, list[dict[str, Any]]] = {}
        self.webhook: dict[str, Any] = {}
        self.flood_per_second: int | None = None
        """Answer 429 to sends past this many per second (Telegram's own flood control), when set."""
        self.listener: Callable[[ApiCall, Any], None] | None = None
        """Called with each successful call and its result, outside the lock (benchmarks drive chats with it)."""
        self._recent: deque[float] = deque()
        self._server: ThreadingHTTPServer | None = None
        self.url = ""

    # --- life cycle -----------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"{self.url}/bot"

    @property
    def base_file_url(self) -> str:
        return f"{self.url}/file/bot"

    def start(self) -> FakeBotApi:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real server
            # Each answer leaves in one write (flushed after the request), without waiting on delayed ACKs.
            wbufsize = 1 << 16
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                fake._serve(self)

            def do_POST(self) -> None:
                fake._serve(self)

            def log_message(self, *args: object) -> None:
                pass

        server = _Server(("127.0.0.1", 0), Handler)
        self._server = server
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True, name="fake-bot-api").start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # --- what a test does -----------------------------------------------------------------------------------

    def user(self, user_id: int, first_name: str = "Alice") -> dict[str, Any]:
        return {"id": user_id, "is_bot": False, "first_name": first_name, "language_code": "en"}

    def private_chat(self, user: dict[str, Any]) -> dict[str, Any]:
        return {"id": user["id"], "type": "private", "first_name": user["first_name"]}

    def group_chat(self, chat_id: int, title: str = "Team") -> dict[str, Any]:
        return {"id": chat_id, "type": "supergroup", "title": title}

    def send_text(
        self,
        user: dict[str, Any],
        text: str,
        chat: dict[str, Any] | None = None,
        reply_to: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A user types `text` (in their private chat unless `chat` is given); returns the message."""
        extra: dict[str, Any] = {"text": text}
        entities = auto_entities(text)
        if entities:
            extra["entities"] = entities
        if reply_to is not None:
            extra["reply_to_message"] = reply_to
        return self._user_message(user, chat, extra)

    def send_document(
        self,
        user: dict[str, Any],
        file_name: str,
        content: bytes,
        caption: str | None = None,
        chat: dict[str, Any] | None = None,
        size: int | None = None,
    ) -> dict[str, Any]:
        """A user sends a file; `size` declares a size other than the content's (a huge upload)."""
        stored = self._store_file(content, file_name, size)
        extra: dict[str, Any] = {
            "document": {
                "file_id": stored.file_id,
                "file_unique_id": stored.unique_id,
                "file_name": file_name,
                "mime_type": "application/octet-stream",
                "file_size": stored.size,
            }
        }
        if caption is not None:
            extra["caption"] = caption
            if auto_entities(caption):
                extra["caption_entities"] = auto_entities(caption)
        return self._user_message(user, chat, extra)

    def send_media(self, user: dict[str, Any], kind: str, chat: dict[str, Any] | None = None) -> dict[str, Any]:
        """A sticker, photo or voice message."""
        stored = self._store_file(b"\x89binary", f"{kind}.bin", None)
        ids = {"file_id": stored.file_id, "file_unique_id": stored.unique_id}
        media: dict[str, Any] = {
            "sticker": {
                "sticker": {
                    **ids,
                    "type": "regular",
                    "width": 512,
                    "height": 512,
                    "is_animated": False,
                    "is_video": False,
                }
            },
            "photo": {"photo": [{**ids, "width": 90, "height": 90}]},
            "voice": {"voice": {**ids, "duration": 2}},
        }[kind]
        return self._user_message(user, chat, media)

    def edit_text(self, message: dict[str, Any], text: str) -> None:
        """The user edits a message they sent."""
        edited = {**message, "text": text, "edit_date": int(time.time())}
        self.queue({"edited_message": edited})

    def press(self, user: dict[str, Any], message: dict[str, Any], data: str) -> str:
        """The user presses an inline button of a bot message; returns the callback query id."""
        query_id = str(next(self.ids))
        with self.lock:
            self.open_queries.add(query_id)
        self.queue(
            {
                "callback_query": {
                    "id": query_id,
                    "from": user,
                    "chat_instance": "fake-instance",
                    "data": data,
                    "message": message,
                }
            }
        )
        return query_id

    def queue(self, update: dict[str, Any]) -> int:
        """Hand an update to the bot: kept for getUpdates, or posted to the webhook once one is set."""
        with self.lock:
            update_id = next(self.update_ids)
            webhook = dict(self.webhook)
            if not webhook:
                self.updates.append({"update_id": update_id, **update})
                self.lock.notify_all()
                return update_id
        status = self.post_to_webhook({"update_id": update_id, **update}, webhook.get("secret_token"))
        if status != 200:
            raise AssertionError(f"the bot's webhook answered {status}")
        return update_id

    def post_to_webhook(self, update: dict[str, Any], secret: str | None, wait: float = 5.0) -> int:
        """POST an update to the bot's webhook as Telegram does; returns the HTTP status."""
        headers = {"Content-Type": "application/json"}
        if secret is not None:
            headers["X-Telegram-Bot-Api-Secret-Token"] = secret
        request = urllib.request.Request(self.webhook["url"], json.dumps(update).encode(), headers, method="POST")
        deadline = time.monotonic() + wait
        while True:
            try:
                with _DIRECT.open(request, timeout=5) as response:
                    return int(response.status)
            except urllib.error.HTTPError as exc:
                return exc.code
            except urllib.error.URLError:  # the bot's web server is still starting
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def fail(
        self, method: str, status: int, description: str = "", retry_after: int | None = None, times: int = 1
    ) -> None:
        """Answer the next `times` calls of `method` with an error."""
        default = {429: f"Too Many Requests: retry after {retry_after}", 500: "Internal Server Error"}
        with self.lock:
            self.failures.append(
                _Failure(method, status, description or default.get(status, "Error"), retry_after, times)
            )

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0, what: str = "a condition") -> Any:
        """Block until `predicate()` (checked under the lock after every change) is truthy; returns it."""
        with self.lock:
            result = self.lock.wait_for(predicate, timeout)
            if not result:
                methods = [c.method for c in self.calls]
                raise AssertionError(f"timed out after {timeout} s waiting for {what}; calls so far: {methods}")
            return result

    def calls_to(self, method: str) -> list[ApiCall]:
        with self.lock:
            return [c for c in self.calls if c.method == method and c.status == 200]

    def attempts(self, method: str) -> list[ApiCall]:
        """Every call of `method`, failed ones included."""
        with self.lock:
            return [c for c in self.calls if c.method == method]

    def bot_messages(self, chat_id: int) -> list[dict[str, Any]]:
        """The bot's messages in a chat as they look now (after edits), oldest first."""
        with self.lock:
            return [m for (c, _), m in sorted(self.messages.items()) if c == chat_id]

    # --- internals ------------------------------------------------------------------------------------------

    def _user_message(self, user: dict[str, Any], chat: dict[str, Any] | None, extra: dict[str, Any]) -> dict:
        chat = chat or self.private_chat(user)
        with self.lock:
            self.chats[chat["id"]] = chat
            self.chats.setdefault(user["id"], self.private_chat(user))
            message = {
                "message_id": next(self.message_ids),
                "date": int(time.time()),
                "chat": chat,
                "from": user,
                **extra,
            }
            self.user_messages[(chat["id"], message["message_id"])] = message
        self.queue({"message": message})
        return message

    def _store_file(self, content: bytes, name: str, size: int | None) -> _File:
        number = next(self.ids)
        suffix = re.search(r"\.[A-Za-z0-9]+$", name)
        stored = _File(
            f"file-{number}",
            f"unique-{number}",
            f"documents/file_{number}{suffix.group() if suffix else ''}",
            content,
            size if size is not None else len(content),
        )
        with self.lock:
            self.files[stored.file_id] = stored
        return stored

    def _serve(self, request: BaseHTTPRequestHandler) -> None:
        path = unquote(urlparse(request.path).path)
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        file_prefix = f"/file/bot{self.token}/"
        if path.startswith(file_prefix):
            self._download(request, path[len(file_prefix) :])
            return
        found = re.fullmatch(r"/bot([^/]*)/(\w+)", path)
        if found is None or found.group(1) != self.token:
            self._send(
                request,
                401 if found else 404,
                {
                    "ok": False,
                    "error_code": 401 if found else 404,
                    "description": "Unauthorized" if found else "Not Found",
                },
            )
            return
        method = found.group(2)
        params, files = _parse_body(request.headers.get("Content-Type", ""), body)
        call = ApiCall(method, params, files, time.monotonic())
        try:
            with self.lock:
                self.calls.append(call)
                self.lock.notify_all()
                self._check_failures(method)
            result = self._dispatch(method, params, files)
        except ApiError as exc:
            call.status = exc.status
            answer: dict[str, Any] = {"ok": False, "error_code": exc.status, "description": exc.description}
            if exc.retry_after is not None:
                answer["parameters"] = {"retry_after": exc.retry_after}
            self._send(request, exc.status, answer)
        else:
            self._send(request, 200, {"ok": True, "result": result})
            if self.listener is not None:
                self.listener(call, result)
        finally:
            with self.lock:
                self.lock.notify_all()

    def _check_failures(self, method: str) -> None:
        for failure in self.failures:
            if failure.method == method and failure.times > 0:
                failure.times -= 1
                raise ApiError(failure.status, failure.description, failure.retry_after)
        if self.flood_per_second is not None and method in FLOOD_METHODS:
            now = time.monotonic()
            while self._recent and self._recent[0] <= now - 1.0:
                self._recent.popleft()
            if len(self._recent) >= self.flood_per_second:
                raise ApiError(429, "Too Many Requests: retry after 1", 1)
            self._recent.append(now)

    def _send(self, request: BaseHTTPRequestHandler, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    def _download(self, request: BaseHTTPRequestHandler, file_path: str) -> None:
        with self.lock:
            stored = next((f for f in self.files.values() if f.path == file_path), None)
            self.calls.append(
                ApiCall("download", {"file_path": file_path}, at=time.monotonic(), status=200 if stored else 404)
            )
            self.lock.notify_all()
        if stored is None:
            self._send(request, 404, {"ok": False, "error_code": 404, "description": "Not Found"})
            return
        request.send_response(200)
        request.send_header("Content-Type", "application/octet-stream")
        request.send_header("Content-Length", str(len(stored.content)))
        request.end_headers()
        request.wfile.write(stored.content)

    def _dispatch(self, method: str, params: dict[str, Any], files: dict[str, tuple[str, bytes]]) -> Any:
        if method == "getUpdates":
            return self._get_updates(params)
        with self.lock:
            if method == "getMe":
                return self.bot_user
            if method in ("deleteWebhook", "close", "logOut"):
                self.webhook = {}
                return True
            if method == "setWebhook":
                self.webhook = dict(params)
                return True
            if method == "getWebhookInfo":
                return {
                    "url": self.webhook.get("url", ""),
                    "has_custom_certificate": False,
                    "pending_update_count": len(self.updates),
                }
            if method == "setMyCommands":
                scope = params.get("scope") or {"type": "default"}
                if scope.get("type") == "chat" and scope.get("chat_id") not in self.chats:
                    raise ApiError(400, "Bad Request: chat not found")
                self.commands[json.dumps(scope, sort_keys=True)] = params["commands"]
                return True
            if method == "sendChatAction":
                self._chat(params)
                return True
            if method == "sendMessage":
                return self._send_message(params)
            if method == "editMessageText":
                return self._edit_message(params)
            if method == "answerCallbackQuery":
                query_id = params.get("callback_query_id")
                if query_id not in self.open_queries:
                    raise ApiError(
                        400, "Bad Request: query is too old and response timeout expired or query ID is invalid"
                    )
                self.open_queries.discard(query_id)
                return True
            if method == "getFile":
                stored = self.files.get(params.get("file_id", ""))
                if stored is None:
                    raise ApiError(400, "Bad Request: invalid file_id")
                if stored.size > MAX_DOWNLOAD_BYTES:
                    raise ApiError(400, "Bad Request: file is too big")
                return {
                    "file_id": stored.file_id,
                    "file_unique_id": stored.unique_id,
                    "file_size": stored.size,
                    "file_path": stored.path,
                }
            if method == "sendDocument":
                chat = self._chat(params)
                name, content = files.get("document", ("document", b""))
                stored = self._store_file(content, name, None)
                message = self._new_message(
                    chat,
                    {
                        "document": {
                            "file_id": stored.file_id,
                            "file_unique_id": stored.unique_id,
                            "file_name": name,
                            "file_size": len(content),
                        }
                    },
                )
                return message
        raise ApiError(404, "Not Found")

    def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        offset = int(params.get("offset") or 0)
        limit = int(params.get("limit") or 100)
        timeout = float(params.get("timeout") or 0)
        allowed = params.get("allowed_updates") or None

        def wanted(update: dict[str, Any]) -> bool:
            kind = next(k for k in update if k != "update_id")
            return allowed is None or kind in allowed

        with self.lock:
            self.updates = [u for u in self.updates if u["update_id"] >= offset]
            self.lock.wait_for(lambda: any(wanted(u) for u in self.updates), timeout)
            self.updates = [u for u in self.updates if wanted(u)]
            return self.updates[:limit]

    def _chat(self, params: dict[str, Any]) -> dict[str, Any]:
        chat = self.chats.get(params.get("chat_id"))  # type: ignore[arg-type]
        if chat is None:
            raise ApiError(400, "Bad Request: chat not found")
        return chat

    def _text(self, params: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
        text = params.get("text", "")
        if params.get("parse_mode") == "HTML":
            text, entities = parse_html(text)
        elif params.get("parse_mode"):
            raise ApiError(400, f"Bad Request: unsupported parse_mode {params['parse_mode']}")
        else:
            entities = []
        if not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        if utf16_len(text) > MAX_MESSAGE_CHARS:
            raise ApiError(400, "Bad Request: message is too long")
        return text, entities

    def _new_message(self, chat: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
        message = {
            "message_id": next(self.message_ids),
            "date": int(time.time()),
            "chat": chat,
            "from": self.bot_user,
            **extra,
        }
        self.messages[(chat["id"], message["message_id"])] = message
        return message

    def _send_message(self, params: dict[str, Any]) -> dict[str, Any]:
        chat = self._chat(params)
        text, entities = self._text(params)
        extra: dict[str, Any] = {"text": text}
        if entities:
            extra["entities"] = entities
        if "inline_keyboard" in (params.get("reply_markup") or {}):
            extra["reply_markup"] = params["reply_markup"]  # other keyboards are shown, not kept on the message
        reply = (params.get("reply_parameters") or {}).get("message_id")
        if reply is not None:
            key = (chat["id"], reply)
            replied = (
                self.messages.get(key) or self.user_messages.get(key) or {"message_id": reply, "date": 0, "chat": chat}
            )
            extra["reply_to_message"] = replied
        return self._new_message(chat, extra)

    def _edit_message(self, params: dict[str, Any]) -> dict[str, Any]:
        chat = self._chat(params)
        message = self.messages.get((chat["id"], params.get("message_id")))  # type: ignore[arg-type]
        if message is None:
            raise ApiError(400, "Bad Request: message to edit not found")
        text, entities = self._text(params)
        markup = params.get("reply_markup")
        if text == message.get("text") and markup == message.get("reply_markup"):
            raise ApiError(
                400,
                "Bad Request: message is not modified: specified new message content and reply "
                "markup are exactly the same as a current content and reply markup of the message",
            )
        message["text"] = text
        message["edit_date"] = int(time.time())
        message["entities"] = entities
        message.pop("reply_markup", None)
        if markup:
            message["reply_markup"] = markup
        return message


def _parse_body(content_type: str, body: bytes) -> tuple[dict[str, Any], dict[str, tuple[str, bytes]]]:
    params: dict[str, Any] = {}
    files: dict[str, tuple[str, bytes]] = {}
    if content_type.startswith("multipart/form-data"):
        message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True) or b""
            if part.get_filename():
                files[str(name)] = (part.get_filename(), payload)
            else:
                params[str(name)] = payload.decode()
    elif content_type.startswith("application/json"):
        return json.loads(body or b"{}"), files
    else:
        params = {k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
    for key, value in list(params.items()):
        if key not in STRING_PARAMS and isinstance(value, str):
            with suppress(json.JSONDecodeError):
                params[key] = json.loads(value)
    return params, files


@contextmanager
def fake_bot_api(token: str, username: str = "domainbot_test_bot") -> Iterator[FakeBotApi]:
    fake = FakeBotApi(token, username).start()
    try:
        yield fake
    finally:
        fake.stop()
