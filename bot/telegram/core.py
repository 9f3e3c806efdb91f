"""What the Telegram handlers call: answers, ratings, corrections, documents, statistics, exports, erasure.

The handlers only parse updates and send replies; every decision and every store lives here. Work on the
pipeline and the knowledge base runs on the engine's threads; feedback writes run on a worker thread of their
own (the store is thread-safe), so a rating is acknowledged while a long answer is still being generated.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from bot.feedback import FeedbackStore
from bot.pipeline import Answer, Citation, OnPiece, Pipeline
from bot.telegram.access import AccessPolicy, Gate, RateLimiter
from bot.telegram.config import TelegramConfig
from bot.telegram.engine import Engine
from bot.telegram.export import feedback_files
from bot.telegram.formatting import SourcePassage, source_name
from bot.uploads import incoming_path as _incoming_path
from bot.uploads import ingest_upload, safe_file_name
from knowledge import FileResult, KnowledgeBase, KnowledgeError
from knowledge.loaders import LOADERS

log = logging.getLogger(__name__)

CHANNEL = "telegram"
# A "Correct" press waits this long for the right answer; later messages are questions again.
CORRECTION_TIMEOUT = 15 * 60


class UserError(Exception):
    """Something the user asked for that cannot be done; the message says why and what to do instead."""


def conversation_id(chat_id: int, user_id: int) -> str:
    """One conversation per person per chat: in a group, each member keeps their own thread."""
    return f"{CHANNEL}:{chat_id}:{user_id}"


@dataclass(frozen=True)
class SourceInfo:
    name: str
    title: str
    chunks: int
    added_at: str


@dataclass(frozen=True)
class BotStats:
    interactions: int
    ratings_up: int
    ratings_down: int
    corrections: int
    documents: int
    passages: int
    store_bytes: int
    model: str
    adapter: str | None


@dataclass
class _Conversations:
    """The conversations this worker answered, per user, whose memory /forget_me resets. The last answer (for
    /sources) and a correction waited for live in the feedback store, shared by every worker."""

    of_user: dict[int, set[str]] = field(default_factory=dict)


class BotCore:
    """The Telegram bot's logic over one pipeline, its feedback store and its knowledge base."""

    def __init__(
        self,
        config: TelegramConfig,
        engine: Engine,
        pipeline: Pipeline,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.engine = engine
        self.pipeline = pipeline
        self.clock = clock
        self.policy = AccessPolicy(config.admins, config.allowed_users, config.allowed_chats)
        self.gate = Gate(self.policy, RateLimiter(config.rate_limit, config.rate_window, clock))
        self.conversations = _Conversations()
        self._turns: dict[int, asyncio.Lock] = {}
        self._waiting: dict[int, int] = {}

    @property
    def feedback(self) -> FeedbackStore:
        return self.pipeline.feedback

    @property
    def knowledge(self) -> KnowledgeBase:
        if self.pipeline.knowledge is None:
            raise UserError("This bot runs without a knowledge base, so there are no documents to manage.")
        return self.pipeline.knowledge

    def is_admin(self, user_id: int) -> bool:
        return self.policy.is_admin(user_id)

    def require_admin(self, user_id: int) -> None:
        if not self.is_admin(user_id):
            raise UserError("That command is for the bot's admins.")

    @contextlib.asynccontextmanager
    async def turn(self, chat_id: int) -> AsyncIterator[None]:
        """One message of a chat at a time, in order: answers keep their questions' order and history."""
        lock = self._turns.setdefault(chat_id, asyncio.Lock())
        self._waiting[chat_id] = self._waiting.get(chat_id, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._waiting[chat_id] -= 1
            if not self._waiting[chat_id]:
                del self._waiting[chat_id], self._turns[chat_id]

    # --- conversation ---------------------------------------------------------------------------------------

    async def ask(self, chat_id: int, user_id: int, question: str, on_piece: OnPiece | None = None) -> Answer:
        conversation = conversation_id(chat_id, user_id)
        answer = await self.engine.run(self.pipeline.answer, question, conversation, str(user_id), CHANNEL, on_piece)
        self.conversations.of_user.setdefault(user_id, set()).add(conversation)
        citations = [c.model_dump() for c in answer.citations]
        try:
            await asyncio.to_thread(
                self.feedback.remember_answer, conversation, answer.interaction_id, str(user_id), citations
            )
        except sqlite3.Error as exc:
            log.warning("Could not keep the answer for /sources (the answer still goes out): %s", exc)
        return answer

    async def reset(self, chat_id: int, user_id: int) -> None:
        conversation = conversation_id(chat_id, user_id)
        self.pipeline.reset(conversation)
        await asyncio.to_thread(self.feedback.reset_conversation, conversation)

    async def last_sources(self, chat_id: int, user_id: int) -> list[SourcePassage] | None:
        """The passages the last answer cites, in full; None when this conversation has no answer yet."""
        last = await asyncio.to_thread(self.feedback.last_answer, conversation_id(chat_id, user_id))
        if last is None:
            return None
        citations = [Citation(**c) for c in last[1]]
        ids = [c.passage_id for c in citations if c.passage_id]
        stored = await self.engine.run(self.knowledge.passages, ids) if ids else {}
        # A passage removed from the knowledge base since still shows what the answer saw of it.
        return [
            SourcePassage(
                c.number,
                c.source,
                c.location,
                stored[c.passage_id].text if c.passage_id in stored else c.snippet,
            )
            for c in citations
        ]

    # --- ratings and corrections ----------------------------------------------------------------------------

    async def rate(self, interaction_id: str, value: int, user_id: int) -> None:
        """Store 👍 (1) or 👎 (-1); a second press by the same user replaces the first. Raises UnknownInteraction."""
        await asyncio.to_thread(self.feedback.rate, interaction_id, value, rater_id=str(user_id))

    async def start_correction(self, chat_id: int, user_id: int, interaction_id: str) -> None:
        """Wait for this user's next message in this chat as the right answer. Raises UnknownInteraction.
        Kept in the feedback store, so any worker behind the webhook's load balancer takes that message."""
        conversation = conversation_id(chat_id, user_id)
        await asyncio.to_thread(self.feedback.await_correction, conversation, interaction_id, str(user_id))

    async def take_correction(self, chat_id: int, user_id: int) -> str | None:
        """The interaction this user's message corrects, if they pressed "Correct" recently."""
        conversation = conversation_id(chat_id, user_id)
        return await asyncio.to_thread(self.feedback.take_correction, conversation, CORRECTION_TIMEOUT)

    async def cancel_correction(self, chat_id: int, user_id: int) -> bool:
        return await asyncio.to_thread(self.feedback.cancel_correction, conversation_id(chat_id, user_id))

    async def correct(self, interaction_id: str, text: str, user_id: int) -> None:
        """Store the right answer, with personal data masked like every logged question."""

        def store() -> None:
            self.feedback.correct(interaction_id, self.pipeline.guard.mask_pii(text), rater_id=str(user_id))

        await asyncio.to_thread(store)

    async def forget(self, user_id: int) -> int:
        """Erase the user's logged interactions and what the bot remembers of their conversations."""
        erased = await asyncio.to_thread(self.feedback.forget_user, str(user_id))
        for conversation in self.conversations.of_user.pop(user_id, set()):
            self.pipeline.reset(conversation)
        return int(erased)

    # --- documents ------------------------------------------------------------------------------------------

    def check_upload(self, file_name: str | None, size: int | None) -> str:
        """The name the document will be stored under; raises UserError for a type or size the bot refuses."""
        name = safe_file_name(file_name)
        suffix = Path(name).suffix.lower()
        if suffix not in LOADERS:
            kinds = " ".join(LOADERS)
            raise UserError(f"I can't read {suffix or 'files without an extension'}; send one of: {kinds}.")
        limit = self.config.download_limit
        if size is not None and size > limit:
            raise UserError(f"{name} is {size / 1e6:.1f} MB; the largest document I can take is {limit / 1e6:.0f} MB.")
        return name

    def incoming_path(self, name: str) -> Path:
        """Where a download lands before it is ingested (a unique name, on the same disk as the uploads)."""
        return _incoming_path(self.config.uploads_dir, name)

    async def ingest(self, downloaded: Path, name: str) -> FileResult:
        """Add a downloaded document to the knowledge base under its name; a new version replaces the old."""
        return await self.engine.run(ingest_upload, self.knowledge, downloaded, self.config.uploads_dir / name)

    async def sources(self) -> list[SourceInfo]:
        """The documents, each by its file name: the folders they were added from are the server's business."""
        records = await self.engine.run(lambda: self.knowledge.sources())
        return [SourceInfo(source_name(r.source), r.title, r.chunks, r.added_at) for r in records]

    async def remove(self, name: str) -> tuple[str, int]:
        """Remove a source named as /kb shows it (or by its full name); returns that name and its passages."""
        return await self.engine.run(self._remove, name.strip())

    def _remove(self, name: str) -> tuple[str, int]:
        kb = self.knowledge
        sources = [r.source for r in kb.sources()]
        matches = [s for s in sources if s == name] or [s for s in sources if source_name(s) == name]
        if not matches:
            raise UserError(f"No source named {name!r}. /kb lists the sources.")
        if len(matches) > 1:
            raise UserError(f"Several sources are named {name!r}; send the full one: {', '.join(matches)}")
        source = matches[0]
        try:
            chunks = kb.remove(source)
        except KnowledgeError as exc:
            raise UserError(str(exc)) from None
        uploaded = Path(source)
        if uploaded.parent == self.config.uploads_dir.resolve():
            uploaded.unlink(missing_ok=True)
        return source_name(source), chunks

    # --- admin ----------------------------------------------------------------------------------------------

    async def stats(self) -> BotStats:
        feedback = await asyncio.to_thread(self.feedback.stats)
        knowledge = await self.engine.run(lambda: self.knowledge.stats())
        backend = self.pipeline.backend
        return BotStats(
            interactions=feedback["interactions"],
            ratings_up=feedback["ratings_up"],
            ratings_down=feedback["ratings_down"],
            corrections=feedback["corrections"],
            documents=cast(int, knowledge["documents"]),
            passages=cast(int, knowledge["chunks"]),
            store_bytes=cast(int, knowledge["bytes_on_disk"]),
            model=backend.model_name,
            adapter=backend.adapter,
        )

    async def export(self, out_dir: Path) -> list[Path]:
        return await asyncio.to_thread(feedback_files, self.feedback, out_dir, self.pipeline.guard.mask_pii)
