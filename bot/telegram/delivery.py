"""Getting text to Telegram despite its limits: flaky networks, long texts, formatting it will not parse.

Calls the bot makes go through `call_api`: network errors and 5xx answers are retried with doubling back-off,
and anything else is raised at once (flood control, HTTP 429, is waited out below it, in `flood.FloodControl`).
Long texts are split (`formatting.split_html`); a message Telegram cannot parse is sent again as plain text.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from telegram import Bot, InlineKeyboardMarkup, LinkPreviewOptions, Message, ReplyParameters
from telegram.constants import ChatAction, ParseMode
from telegram.error import BadRequest, NetworkError, TelegramError

from bot.telegram.formatting import render_draft, split_html, to_plain

log = logging.getLogger(__name__)

T = TypeVar("T")
NO_PREVIEW = LinkPreviewOptions(is_disabled=True)
# Telegram shows "typing…" for about 5 s after each chat action.
TYPING_EVERY = 4.0
# Chat-action tasks left to finish on their own; asyncio keeps only weak references to tasks.
_unfinished: set[asyncio.Task[None]] = set()


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    """Tries per call, the first included."""
    backoff: float = 0.5
    """Seconds before the first retry after a network error; doubled each time up to `max_backoff`."""
    max_backoff: float = 8.0


DEFAULT_RETRY = RetryPolicy()


async def call_api(make: Callable[[], Awaitable[T]], policy: RetryPolicy = DEFAULT_RETRY) -> T:
    """Run one Bot API call, retrying network errors and server failures with back-off."""
    delay = policy.backoff
    for attempt in range(1, policy.attempts + 1):
        try:
            return await make()
        except BadRequest:
            raise  # the request itself is wrong; sending it again cannot help
        except NetworkError as exc:
            if attempt == policy.attempts:
                raise
            log.warning("Bot API call failed (%s); trying again in %.1f s", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, policy.max_backoff)
    raise AssertionError("unreachable: the last attempt returns or raises")


def is_parse_error(exc: BadRequest) -> bool:
    return "can't parse entities" in exc.message.lower()


def is_not_modified(exc: BadRequest) -> bool:
    return "message is not modified" in exc.message.lower()


def _reply_to(message_id: int | None) -> ReplyParameters | None:
    # The question may be deleted while it is answered; the answer goes out anyway.
    return None if message_id is None else ReplyParameters(message_id, allow_sending_without_reply=True)


async def send_html(
    bot: Bot,
    chat_id: int,
    markup: str,
    reply_to: int | None = None,
    keyboard: InlineKeyboardMarkup | None = None,
    policy: RetryPolicy = DEFAULT_RETRY,
) -> list[Message]:
    """Send bot HTML as one or more messages; the first replies to `reply_to`, the last carries `keyboard`."""
    pieces = split_html(markup)
    sent = []
    for i, piece in enumerate(pieces):
        last = i == len(pieces) - 1
        sent.append(
            await _send_piece(bot, chat_id, piece, reply_to if i == 0 else None, keyboard if last else None, policy)
        )
    return sent


async def _send_piece(
    bot: Bot,
    chat_id: int,
    piece: str,
    reply_to: int | None,
    keyboard: InlineKeyboardMarkup | None,
    policy: RetryPolicy,
) -> Message:
    def send(text: str, parse_mode: str | None) -> Callable[[], Awaitable[Message]]:
        return lambda: bot.send_message(
            chat_id,
            text,
            parse_mode=parse_mode,
            reply_parameters=_reply_to(reply_to),
            reply_markup=keyboard,
            link_preview_options=NO_PREVIEW,
        )

    try:
        return await call_api(send(piece, ParseMode.HTML), policy)
    except BadRequest as exc:
        if not is_parse_error(exc):
            raise
        log.warning("Telegram could not parse a message's formatting (%s); sending it as plain text", exc)
        return await call_api(send(to_plain(piece), None), policy)


async def edit_html(
    bot: Bot,
    chat_id: int,
    message_id: int,
    piece: str,
    keyboard: InlineKeyboardMarkup | None = None,
    policy: RetryPolicy = DEFAULT_RETRY,
) -> None:
    """Replace a message's text with one piece of bot HTML (plain text if Telegram cannot parse it)."""

    def edit(text: str, parse_mode: str | None) -> Callable[[], Awaitable[object]]:
        return lambda: bot.edit_message_text(
            text,
            chat_id=chat_id,
            message_id=message_id,
            parse_mode=parse_mode,
            reply_markup=keyboard,
            link_preview_options=NO_PREVIEW,
        )

    try:
        await call_api(edit(piece, ParseMode.HTML), policy)
    except BadRequest as exc:
        if is_not_modified(exc):
            return
        if not is_parse_error(exc):
            raise
        log.warning("Telegram could not parse a message's formatting (%s); editing it as plain text", exc)
        await call_api(edit(to_plain(piece), None), policy)


async def replace_html(
    bot: Bot,
    chat_id: int,
    message_id: int,
    markup: str,
    keyboard: InlineKeyboardMarkup | None = None,
    policy: RetryPolicy = DEFAULT_RETRY,
) -> None:
    """Turn a status or draft message into `markup`: its first piece in place, the rest as new messages."""
    pieces = split_html(markup)
    await edit_html(bot, chat_id, message_id, pieces[0], keyboard if len(pieces) == 1 else None, policy)
    for i, piece in enumerate(pieces[1:], start=1):
        await _send_piece(bot, chat_id, piece, None, keyboard if i == len(pieces) - 1 else None, policy)


@contextlib.asynccontextmanager
async def typing(bot: Bot, chat_id: int, every: float = TYPING_EVERY) -> AsyncIterator[None]:
    """Show "typing…" in the chat until the block ends. Best effort: a failed chat action changes nothing.

    A chat action still in flight when the block ends is left to finish: cancelling an HTTP request midway
    costs its connection, and under load those reconnections held answers back by seconds."""
    done = asyncio.Event()

    async def keep_typing() -> None:
        while not done.is_set():
            try:
                await bot.send_chat_action(chat_id, ChatAction.TYPING)
            except Exception as exc:  # cosmetic: nothing about a chat action may fail an answer
                log.debug("Chat action failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), every)

    task = asyncio.create_task(keep_typing())
    _unfinished.add(task)
    task.add_done_callback(_unfinished.discard)
    try:
        yield
    finally:
        done.set()


class LiveReply:
    """An answer on its way to one chat: drafts of the text as it is generated, at most one edit per `interval`
    seconds (0: no drafts), then the final text in place of the draft.

    `feed` runs on the event loop; `feeder()` gives the worker thread a callback that hands pieces over safely.
    Drafts are best effort: one that fails is skipped.
    """

    def __init__(
        self,
        bot: Bot,
        chat_id: int,
        reply_to: int | None,
        interval: float,
        policy: RetryPolicy = DEFAULT_RETRY,
    ) -> None:
        self.bot = bot
        self.chat_id = chat_id
        self.reply_to = reply_to
        self.interval = interval
        self.policy = policy
        self.text = ""
        self.message_id: int | None = None
        self._shown = ""
        self._last = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._flushing: asyncio.Task[None] | None = None
        self._finished = False

    def feeder(self) -> Callable[[str], None] | None:
        """A thread-safe `on_piece` for the pipeline, or None when drafts are off."""
        if self.interval <= 0:
            return None
        loop = asyncio.get_running_loop()

        def on_piece(piece: str) -> None:
            loop.call_soon_threadsafe(self.feed, piece)

        return on_piece

    def feed(self, piece: str) -> None:
        self.text += piece
        if self._timer is None and self._flushing is None and not self._finished:
            self._schedule()

    def _schedule(self) -> None:
        now = time.monotonic()
        delay = max(self._last + self.interval - now, 0.0)
        self._timer = asyncio.get_running_loop().call_later(delay, self._begin_flush)

    def _begin_flush(self) -> None:
        self._timer = None
        if not self._finished:
            self._flushing = asyncio.ensure_future(self._flush())

    async def _flush(self) -> None:
        draft = render_draft(self.text)
        try:
            if not self.text.strip() or draft == self._shown:
                return
            if self.message_id is None:
                sent = await self.bot.send_message(
                    self.chat_id, draft, reply_parameters=_reply_to(self.reply_to), link_preview_options=NO_PREVIEW
                )
                self.message_id = sent.message_id
            else:
                await self.bot.edit_message_text(
                    draft, chat_id=self.chat_id, message_id=self.message_id, link_preview_options=NO_PREVIEW
                )
            self._shown = draft
        except TelegramError as exc:
            log.debug("Draft update skipped: %s", exc)
        finally:
            self._last = time.monotonic()
            self._flushing = None
            if not self._finished and render_draft(self.text) != self._shown:
                self._schedule()

    async def finish(self, markup: str, keyboard: InlineKeyboardMarkup | None = None) -> None:
        """Stop drafting and show the final text: in place of the draft if there is one, else as new messages."""
        self._finished = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._flushing is not None:
            await asyncio.shield(self._flushing)
        if self.message_id is None:
            await send_html(self.bot, self.chat_id, markup, self.reply_to, keyboard, self.policy)
        else:
            await replace_html(self.bot, self.chat_id, self.message_id, markup, keyboard, self.policy)
