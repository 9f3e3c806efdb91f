"""Generation on an OpenAI-compatible server (vLLM, llama.cpp's server, TGI), streamed over server-sent events.

The bot keeps everything but the decode loop: retrieval, prompt building, Inform and the rails run here, and
only the finished messages go to `POST {url}/chat/completions` (or `{url}/completions` with the rendered text
for the Alpaca and KoAlpaca prompt formats). Sampling settings map onto the request: max_new_tokens ->
max_tokens, temperature, top_p, stop, seed; repetition_penalty is sent as the `repetition_penalty` extra field
that vLLM (and TGI's and llama.cpp's servers) accept, and only when it is not 1.0 — a strict server that
rejects unknown fields needs DOMAINBOT_REPETITION_PENALTY=1.

Token counts come from the server's `usage` chunk (asked for with `stream_options.include_usage`); a server
that sends none gets an estimate: the prompt counted locally, one token per streamed chunk. Locally means the
tokenizer of DOMAINBOT_MODEL (only the tokenizer is loaded, on first use) — exact when that is the served
model, and otherwise a stand-in — or, without one, a conservative estimate from the text's length.

A server that cannot be reached or answers wrongly before the answer starts raises `OpenAIServerError`, one
line that names the server (never its credentials) and what went wrong. A stream that breaks off after text
has arrived ends the answer with that text and finish_reason 'interrupted'.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from bot.errors import DomainbotError
from bot.model import text_formats
from bot.model.backend import GenerationParams, GenerationResult, Message, answer_budget
from bot.model.text_formats import PromptFormat

log = logging.getLogger(__name__)

# With no window configured or reported: small enough for any LLaMA-family model served today.
DEFAULT_CONTEXT = 2048
# The estimate without a tokenizer: LLaMA-family BPE tokenizers average about 4 bytes of English per token and
# about one token per Hangul syllable (3 bytes); 3 bytes per token over-counts both, so prompts never overflow.
BYTES_PER_TOKEN = 3
TOKENS_PER_MESSAGE = 8  # role markers and separators a chat template adds around each message
# Finish reasons as the Backend protocol names them; 'stop' becomes 'eos' unless a stop string ended the answer.
FINISH_REASONS = {"length": "length", "abort": "interrupted"}
SNIPPET_CHARS = 120


class OpenAIServerError(DomainbotError):
    """The server could not be reached, or did not answer as an OpenAI-compatible server does."""


def display_url(url: str) -> str:
    """The URL without user name, password, query or fragment: safe to show in messages and logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def check_url(url: str) -> str:
    """The base URL, normalised; raises DomainbotError for anything but an http(s) URL with a host."""
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DomainbotError(
            f"DOMAINBOT_OPENAI_URL must be an http(s) URL of an OpenAI-compatible server such as "
            f"http://gpu-box:8000/v1, got {display_url(url) or '(empty)'!r}."
        )
    if parts.query or parts.fragment:
        raise DomainbotError(
            f"DOMAINBOT_OPENAI_URL must not carry a query or fragment, got {display_url(url)!r}?...; "
            "put the API key in DOMAINBOT_OPENAI_API_KEY."
        )
    return url.rstrip("/")


Count = Callable[[Sequence[Message], PromptFormat], int]


class TokenCounter:
    """Counts prompt tokens with a local tokenizer, loaded on first use (or by `warm`); without one, estimates.

    A model folder's tokenizer.json and chat template load in well under a second through `ChatFormat`, with no
    transformers import; a GGUF file's tokenizer takes transformers and several seconds.
    """

    def __init__(self, folder: Path | None = None, gguf_file: str | None = None) -> None:
        self.folder = folder
        self.gguf_file = gguf_file
        self._count: Count | None = None
        self._lock = threading.Lock()
        self._failed = folder is None

    @property
    def exact(self) -> bool:
        return not self._failed

    def count(self, messages: Sequence[Message], prompt_format: PromptFormat) -> int:
        count = self._load()
        return estimate_tokens(messages) if count is None else count(messages, prompt_format)

    def warm(self) -> None:
        """Load the tokenizer in a background thread, so the first answer does not wait for it."""
        if not self._failed:
            threading.Thread(target=self._load, name="tokenizer-load", daemon=True).start()

    def _load(self) -> Count | None:
        if self._failed or self._count is not None:
            return self._count
        with self._lock:
            if self._count is None and not self._failed:
                try:
                    self._count = self._open()
                # A tokenizer that will not load costs exact counts, not the answer: estimate instead.
                except Exception as exc:
                    log.warning("No tokenizer from %s (%s); estimating prompt lengths instead.", self.folder, exc)
                    self._failed = True
        return self._count

    def _open(self) -> Count:
        assert self.folder is not None
        if self.gguf_file is None:
            from bot.model.chat_format import ChatFormat

            chat_format = ChatFormat(self.folder)

            def count_with_format(messages: Sequence[Message], prompt_format: PromptFormat) -> int:
                if prompt_format != "chat":
                    return len(
                        chat_format.encode(text_formats.render(messages, prompt_format), add_special_tokens=True)
                    )
                return len(chat_format.encode_chat(messages)) if chat_format.has_template else estimate_tokens(messages)

            return count_with_format
        from transformers import AutoTokenizer

        tokenizer: Any = AutoTokenizer.from_pretrained(str(self.folder), gguf_file=self.gguf_file)

        def count_with_transformers(messages: Sequence[Message], prompt_format: PromptFormat) -> int:
            if prompt_format != "chat":
                text = text_formats.render(messages, prompt_format)
                return len(tokenizer(text, add_special_tokens=True)["input_ids"])
            if tokenizer.chat_template is None:
                return estimate_tokens(messages)
            conversation = [{"role": m["role"], "content": m["content"]} for m in messages]
            encoded = tokenizer.apply_chat_template(
                conversation, add_generation_prompt=True, tokenize=True, return_dict=True
            )
            return len(encoded["input_ids"])

        return count_with_transformers


def estimate_tokens(messages: Sequence[Message]) -> int:
    """A conservative token count for text whose tokenizer is not at hand."""
    return sum(-(-len(m["content"].encode()) // BYTES_PER_TOKEN) + TOKENS_PER_MESSAGE for m in messages)


class OpenAIBackend:
    """A Backend whose answers come from an OpenAI-compatible HTTP server."""

    name = "openai"

    def __init__(
        self,
        url: str,
        model: str | None = None,
        *,
        api_key: str | None = None,
        context: int | None = None,
        timeout: float = 60.0,
        connect_timeout: float = 5.0,
        prompt_format: PromptFormat = "chat",
        counter: TokenCounter | None = None,
        adapter: str | None = None,
    ) -> None:
        """`model` None takes the first model the server lists (`connect()` asks). `adapter` is the adapter name
        the server serves as `model`, reported as this backend's adapter."""
        self.url = check_url(url)
        self.where = display_url(self.url)
        self._model = model
        self.adapter = adapter
        self.prompt_format = prompt_format
        self.counter = counter or TokenCounter()
        self._configured_context = context
        self._served_context: int | None = None
        self._secret = api_key or ""
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.client = httpx.Client(
            base_url=self.url + "/",
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            # Only the URL decides where requests go: no HTTP(S)_PROXY from the environment.
            trust_env=False,
        )

    # --- the Backend protocol -------------------------------------------------------------------------------

    @property
    def model_name(self) -> str:
        if self._model is None:
            self.connect()
        assert self._model is not None
        return self._model

    def count_tokens(self, messages: Sequence[Message]) -> int:
        return self.counter.count(messages, self.prompt_format)

    def context_window(self) -> int:
        return self._configured_context or self._served_context or DEFAULT_CONTEXT

    def stream(self, messages: Sequence[Message], params: GenerationParams, result: GenerationResult) -> Iterator[str]:
        started = time.perf_counter()
        result.prompt_tokens = self.count_tokens(messages)
        result.timings["prompt"] = time.perf_counter() - started
        budget = answer_budget(params, self.context_window(), result.prompt_tokens)
        if budget <= 0:
            result.finish_reason = "length"
            return
        path, body = self._request(messages, params, budget)
        result.finish_reason = "stopped"
        chunks = 0
        try:
            with self.client.stream("POST", path, json=body) as response:
                self._raise_for_status(response, path)
                for event in self._events(response, path):
                    piece, finish, usage = self._read_chunk(event, path)
                    if usage is not None:
                        result.prompt_tokens = int(usage.get("prompt_tokens", result.prompt_tokens))
                        result.new_tokens = int(usage.get("completion_tokens", result.new_tokens))
                    if piece:
                        result.timings.setdefault("first_token", time.perf_counter() - started)
                        chunks += 1
                        if usage is None:
                            result.new_tokens = max(result.new_tokens, chunks)
                        yield piece
                    if finish is not None:
                        result.finish_reason = _finish_reason(finish, event, params.stop)
                if result.finish_reason == "stopped":
                    raise self._error(f"ended its stream on {path} without a finish_reason")
        except (httpx.HTTPError, OpenAIServerError) as exc:
            error = exc if isinstance(exc, OpenAIServerError) else self._transport_error(exc, path)
            if chunks == 0:
                raise error from None
            # What arrived stays the answer; the reason says it is cut short.
            log.warning("The answer from %s broke off after %d pieces: %s", self.where, chunks, error)
            result.finish_reason = "interrupted"
        finally:
            result.timings["generate"] = time.perf_counter() - started

    # --- talking to the server -----------------------------------------------------------------------------

    def connect(self) -> None:
        """Ask the server which models it serves: checks that it is up, speaks the API and serves our model, and
        learns the model's name (when none is configured) and context window (vLLM reports it)."""
        models = self._models()
        ids = [str(m.get("id")) for m in models]
        if self._model is None:
            if not ids:
                raise self._error(
                    "lists no models at /models", "Set DOMAINBOT_OPENAI_MODEL to the served model's name."
                )
            self._model = ids[0]
        elif ids and self._model not in ids:
            what = "adapter" if self.adapter is not None else "model"
            raise self._error(
                f"does not serve the {what} {self._model!r}; it serves {', '.join(ids)}",
                "Set DOMAINBOT_OPENAI_MODEL to one of them"
                + (", or load the adapter on the server (vLLM: --lora-modules)." if self.adapter else "."),
            )
        served = next((m for m in models if m.get("id") == self._model), {})
        length = served.get("max_model_len")
        self._served_context = int(length) if isinstance(length, int) and length > 0 else None

    def ping(self) -> None:
        """Raise OpenAIServerError unless the server answers its model list now (and, the first time, serves our
        model)."""
        if self._model is None:
            self.connect()
        else:
            self._models()

    def close(self) -> None:
        self.client.close()

    def _models(self) -> list[dict[str, Any]]:
        try:
            response = self.client.get("models")
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, "/models") from None
        if response.status_code == 404 and self._model is not None:
            return []  # a server without /models (some TGI versions) still serves the configured model
        self._raise_for_status(response, "/models")
        try:
            data = response.json()["data"]
            if not isinstance(data, list) or not all(isinstance(m, dict) for m in data):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise self._error(
                f"answered /models with {self._snippet(response.text)!r}",
                'Expected {"data": [{"id": ...}]} from an OpenAI-compatible server; check DOMAINBOT_OPENAI_URL.',
            ) from None
        return data

    def _request(
        self, messages: Sequence[Message], params: GenerationParams, budget: int
    ) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {
            "model": self.model_name,
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": budget,
            "temperature": params.temperature,
            "top_p": params.top_p if params.temperature > 0 else 1.0,
        }
        if params.stop:
            body["stop"] = list(params.stop)
        if params.seed is not None:
            body["seed"] = params.seed
        if params.repetition_penalty != 1.0:
            body["repetition_penalty"] = params.repetition_penalty
        if self.prompt_format == "chat":
            body["messages"] = [{"role": m["role"], "content": m["content"]} for m in messages]
            return "chat/completions", body
        body["prompt"] = text_formats.render(messages, self.prompt_format)
        return "completions", body

    def _events(self, response: httpx.Response, path: str) -> Iterator[dict[str, Any]]:
        """The JSON objects of the stream's `data:` lines, up to `[DONE]`. A server that ignored `stream` and sent
        one JSON completion is read as a stream of one event."""
        if response.headers.get("content-type", "").startswith("application/json"):
            response.read()
            yield self._parse(response.text, path)
            return
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue  # blank separators, `: keep-alive` comments, `event:` names
            payload = line[len("data:") :].strip()
            if payload == "[DONE]":
                return
            yield self._parse(payload, path)

    def _parse(self, payload: str, path: str) -> dict[str, Any]:
        try:
            event = json.loads(payload)
        except ValueError:
            event = None
        if not isinstance(event, dict):
            raise self._error(
                f"sent a malformed stream on {path}: expected JSON after 'data:', got {self._snippet(payload)!r}"
            )
        if "error" in event or event.get("object") == "error":
            raise self._error(f"failed during the answer on {path}: {self._server_message(event)}")
        return event

    def _read_chunk(self, event: dict[str, Any], path: str) -> tuple[str, str | None, dict[str, Any] | None]:
        """(text piece, finish_reason or None, usage or None) of one chunk."""
        usage = event.get("usage") if isinstance(event.get("usage"), dict) else None
        choices = event.get("choices")
        if not isinstance(choices, list):
            raise self._error(
                f"sent a chunk on {path} without choices: expected "
                f'{{"choices": [{{"delta": {{"content": ...}}}}]}}, got {self._snippet(json.dumps(event))!r}'
            )
        # An empty list is no error: Azure opens with a content-filter chunk, vLLM ends with the usage chunk.
        if not choices:
            return "", None, usage
        choice = choices[0] if isinstance(choices[0], dict) else {}
        # Chat chunks carry `delta.content`; completion chunks and one-shot JSON replies `text` or `message`.
        holder = choice.get("delta") or choice.get("message") or {}
        piece = holder.get("content") if isinstance(holder, dict) else None
        if piece is None:
            piece = choice.get("text")
        if piece is not None and not isinstance(piece, str):
            raise self._error(f"sent a chunk on {path} whose content is not text: {self._snippet(repr(piece))!r}")
        finish = choice.get("finish_reason")
        return piece or "", str(finish) if finish else None, usage

    def _raise_for_status(self, response: httpx.Response, path: str) -> None:
        if response.status_code < 400:
            return
        response.read()
        code = response.status_code
        message = self._server_message_of(response)
        if code in (401, 403):
            hint = (
                "Check DOMAINBOT_OPENAI_API_KEY."
                if self._secret
                else "Set DOMAINBOT_OPENAI_API_KEY to the server's key."
            )
            raise self._error(f"refused the request on {path} (HTTP {code}: {message})", hint)
        if code == 404 and path == "/models":
            # A server without a model list still answers when told the model's name.
            raise self._error(
                f"has no /models (HTTP 404: {message})",
                "Expected an OpenAI-compatible API; DOMAINBOT_OPENAI_URL usually ends in /v1. If the server lists "
                "no models, set DOMAINBOT_OPENAI_MODEL.",
            )
        if code == 404:  # vLLM: a model it does not serve; elsewhere: a URL that is not the API
            raise self._error(
                f"answered {path} with HTTP 404: {message}",
                "Check DOMAINBOT_OPENAI_MODEL, and DOMAINBOT_OPENAI_URL (usually ends in /v1).",
            )
        raise self._error(f"answered {path} with HTTP {code}: {message}")

    def _server_message_of(self, response: httpx.Response) -> str:
        try:
            body = response.json()
        except ValueError:
            text = response.text
            return "an HTML page" if text.lstrip().startswith("<") else repr(self._snippet(text))
        return self._server_message(body) if isinstance(body, dict) else repr(self._snippet(response.text))

    def _server_message(self, body: dict[str, Any]) -> str:
        # OpenAI: {"error": {"message": ...}}; vLLM: {"object": "error", "message": ...}; TGI: {"error": "..."}.
        error = body.get("error")
        message = error.get("message") if isinstance(error, dict) else error
        return self._snippet(str(message or body.get("message") or body.get("detail") or json.dumps(body)))

    def _transport_error(self, exc: httpx.HTTPError, path: str) -> OpenAIServerError:
        if isinstance(exc, httpx.ConnectTimeout):
            return self._error(f"did not accept a connection within {self.connect_timeout:g} s")
        if isinstance(exc, httpx.ConnectError):
            return self._error(
                f"cannot be reached ({self._snippet(str(exc))})", "Start it, or check DOMAINBOT_OPENAI_URL."
            )
        if isinstance(exc, httpx.ReadTimeout):
            return self._error(
                f"sent nothing on {path} for {self.timeout:g} s",
                "It may be overloaded; DOMAINBOT_OPENAI_TIMEOUT sets how long to wait.",
            )
        if isinstance(exc, httpx.RemoteProtocolError):
            return self._error(f"closed the connection on {path} mid-reply ({self._snippet(str(exc))})")
        return self._error(f"failed on {path}: {type(exc).__name__}: {self._snippet(str(exc))}")

    def _error(self, what: str, hint: str = "") -> OpenAIServerError:
        text = f"The OpenAI-compatible server at {self.where} {what.rstrip('.')}."
        return OpenAIServerError(f"{text} {hint}".strip())

    def _snippet(self, text: str) -> str:
        """Text from the server, shortened to one line, with the API key blotted out should it echo it."""
        if self._secret:
            text = text.replace(self._secret, "********")
        text = re.sub(r"\s+", " ", text).strip()
        return text if len(text) <= SNIPPET_CHARS else text[: SNIPPET_CHARS - 1] + "…"


def _finish_reason(finish: str, event: dict[str, Any], stops: Sequence[str]) -> str:
    """The protocol's finish reason for the server's: vLLM says which stop string ended it in `stop_reason`."""
    if finish == "stop":
        choice = event["choices"][0] if event.get("choices") else {}
        return "stop" if choice.get("stop_reason") in stops and stops else "eos"
    return FINISH_REASONS.get(finish, finish)
