"""WolframAlpha for Inform: computational and factual lookups, cached, masked, and never fatal.

The App ID comes from the environment and travels as the v2 API's `appid` query parameter, so every message
and log line that could carry the request URL is scrubbed of it. Without an App ID the client is disabled and
answers `disabled` at once. Timeouts, HTTP errors and malformed replies come back as a status, never an
exception, so the bot still answers when WolframAlpha is down or slow.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

log = logging.getLogger(__name__)

Status = Literal["ok", "no_result", "error", "timeout", "disabled"]
_APPID = re.compile(r"(appid=)[^&\s'\"]+", re.IGNORECASE)


def redact_appid(text: str, app_id: str | None = None) -> str:
    text = _APPID.sub(r"\1***", text)
    return text.replace(app_id, "***") if app_id else text


class _RedactAppId(logging.Filter):
    """httpx logs every request URL at INFO; the v2 API puts the App ID in it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact_appid(record.getMessage())
        record.args = ()
        return True


logging.getLogger("httpx").addFilter(_RedactAppId())


@dataclass(frozen=True)
class WolframAnswer:
    status: Status
    query: str
    text: str | None = None
    pods: dict[str, str] = field(default_factory=dict)
    did_you_mean: list[str] = field(default_factory=list)
    message: str | None = None
    cached: bool = False


class WolframClient:
    """Ask WolframAlpha one question at a time; answers are cached for `ttl_seconds`."""

    def __init__(
        self,
        app_id: str | None,
        url: str | None = None,
        timeout: float = 8.0,
        mask: Callable[[str], str] | None = None,
        cache_size: int = 256,
        ttl_seconds: float = 24 * 3600,
    ) -> None:
        self.app_id = app_id or None
        self.url = url
        self.timeout = timeout
        self.mask = mask or (lambda text: text)
        self.cache: OrderedDict[str, tuple[float, WolframAnswer]] = OrderedDict()
        self.cache_size = cache_size
        self.ttl_seconds = ttl_seconds
        self.lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.app_id is not None

    def ask(self, question: str) -> WolframAnswer:
        query = self.mask(question.strip())
        if not self.enabled:
            return WolframAnswer("disabled", query, message="no WolframAlpha App ID is set (WOLFRAM_APP_ID)")
        key = query.casefold()
        with self.lock:
            hit = self.cache.get(key)
            if hit is not None and time.monotonic() - hit[0] < self.ttl_seconds:
                self.cache.move_to_end(key)
                return WolframAnswer(**{**hit[1].__dict__, "cached": True})
        answer = self._query(query)
        if answer.status in ("ok", "no_result"):  # failures are worth retrying later
            with self.lock:
                self.cache[key] = (time.monotonic(), answer)
                while len(self.cache) > self.cache_size:
                    self.cache.popitem(last=False)
        return answer

    def _query(self, query: str) -> WolframAnswer:
        import httpx
        import wolframalpha

        options: dict[str, Any] = {"timeout": self.timeout}
        if self.url:
            options["url"] = self.url
        client = wolframalpha.Client(self.app_id, **options)
        try:
            result = _run(client.aquery(query))
        except httpx.TimeoutException:
            return WolframAnswer("timeout", query, message=f"no answer within {self.timeout:g} s")
        except AssertionError:  # the client's check that the reply is v2 XML
            log.warning("WolframAlpha replied with something other than v2 XML")
            return WolframAnswer("error", query, message="WolframAlpha replied with something other than v2 XML")
        except (httpx.HTTPError, KeyError, TypeError, ValueError) as exc:
            message = redact_appid(f"{type(exc).__name__}: {exc}", self.app_id)
            log.warning("WolframAlpha query failed: %s", message)
            return WolframAnswer("error", query, message=message)
        return _read_result(query, result)


def _run(coroutine: Any) -> Any:
    """Run a coroutine to completion from sync code, also when this thread already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _read_result(query: str, result: Any) -> WolframAnswer:
    if not result.get("@success", False):
        suggestions = (result.get("didyoumeans") or {}).get("didyoumean") or []
        if isinstance(suggestions, dict | str):
            suggestions = [suggestions]
        did_you_mean = [s.get("#text", "") if isinstance(s, dict) else str(s) for s in suggestions]
        return WolframAnswer("no_result", query, did_you_mean=[s for s in did_you_mean if s])
    pods: dict[str, str] = {}
    primary: str | None = None
    for pod in result.pods:
        texts = [t for t in pod.texts if t]
        if not texts:
            continue
        pods[str(pod.title)] = "\n".join(texts)
        if primary is None and (pod.primary or pod.title == "Result"):
            primary = pods[str(pod.title)]
    if primary is None:
        answers = (text for title, text in pods.items() if "input" not in title.lower())
        primary = next(answers, None)
    if primary is None:
        return WolframAnswer("no_result", query, pods=pods)
    return WolframAnswer("ok", query, text=primary, pods=pods)
