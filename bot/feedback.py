"""The feedback store: every answered interaction, its ratings and corrections, in SQLite (WAL).

The schema grows through append-only, named migrations recorded in a `migrations` table, so each runs exactly
once per database. Writes are one transaction each with synchronous=FULL: once a call returns, a kill -9 (or a
power cut) cannot take the row back. Several processes may write at once; SQLite serialises them and a writer
waits up to `busy_timeout` for its turn.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from bot.errors import DomainbotError

FEEDBACK_FILE = "feedback.sqlite3"
BUSY_TIMEOUT_MS = 10_000


class InteractionRecord(BaseModel):
    """What the pipeline logs for one answered question. The question must already be PII-masked."""

    question: str
    answer: str
    model: str
    adapter: str | None = None
    conversation_id: str = ""
    user_id: str = ""
    channel: str = "terminal"
    passage_ids: list[str] = Field(default_factory=list)
    timings: dict[str, float] = Field(default_factory=dict)
    verdicts: dict[str, Any] = Field(default_factory=dict)
    # The messages the model answered (system prompt, few-shot turns, passages, history, the masked question):
    # a training round learns the correction for the prompt the bot really builds, not for the bare question.
    prompt: list[dict[str, str]] = Field(default_factory=list)


class Rating(BaseModel):
    rater_id: str
    value: Literal[-1, 1]
    score: int | None = None
    updated_at: str


class Correction(BaseModel):
    rater_id: str
    text: str
    created_at: str


class Interaction(InteractionRecord):
    id: str
    created_at: str
    ratings: list[Rating] = Field(default_factory=list)
    corrections: list[Correction] = Field(default_factory=list)


class UnknownInteraction(DomainbotError):
    """A rating or correction named an interaction the store does not hold (any more)."""


def _m001_initial(db: sqlite3.Connection) -> None:
    db.execute(
        """CREATE TABLE interactions (
            id TEXT PRIMARY KEY,
            created_at TEXT NOT NULL,
            conversation_id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            channel TEXT NOT NULL,
            question TEXT NOT NULL,
            answer TEXT NOT NULL,
            model TEXT NOT NULL,
            adapter TEXT,
            passage_ids TEXT NOT NULL,
            timings TEXT NOT NULL,
            verdicts TEXT NOT NULL
        )"""
    )
    db.execute("CREATE INDEX interactions_user ON interactions (user_id)")
    db.execute("CREATE INDEX interactions_created ON interactions (created_at)")
    db.execute(
        """CREATE TABLE ratings (
            interaction_id TEXT NOT NULL REFERENCES interactions (id) ON DELETE CASCADE,
            rater_id TEXT NOT NULL,
            value INTEGER NOT NULL CHECK (value IN (-1, 1)),
            score INTEGER CHECK (score BETWEEN 1 AND 5),
            updated_at TEXT NOT NULL,
            PRIMARY KEY (interaction_id, rater_id)
        )"""
    )
    db.execute(
        """CREATE TABLE corrections (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            interaction_id TEXT NOT NULL REFERENCES interactions (id) ON DELETE CASCADE,
            rater_id TEXT NOT NULL,
            text TEXT NOT NULL,
            created_at TEXT NOT NULL
        )"""
    )
    db.execute("CREATE INDEX corrections_interaction ON corrections (interaction_id)")


def _m002_prompt(db: sqlite3.Connection) -> None:
    db.execute("ALTER TABLE interactions ADD COLUMN prompt TEXT NOT NULL DEFAULT '[]'")


def _m003_conversation_state(db: sqlite3.Connection) -> None:
    # What a front end keeps per conversation between two messages: here rather than in one bot process's
    # memory, so whichever worker behind a load balancer receives the next message can act on it.
    db.execute(
        """CREATE TABLE pending_corrections (
            conversation_id TEXT PRIMARY KEY,
            interaction_id TEXT NOT NULL REFERENCES interactions (id) ON DELETE CASCADE,
            rater_id TEXT NOT NULL,
            requested_at REAL NOT NULL
        )"""
    )
    db.execute("CREATE INDEX pending_corrections_rater ON pending_corrections (rater_id)")
    db.execute(
        """CREATE TABLE last_answers (
            conversation_id TEXT PRIMARY KEY,
            interaction_id TEXT REFERENCES interactions (id) ON DELETE SET NULL,
            user_id TEXT NOT NULL,
            citations TEXT NOT NULL,
            answered_at TEXT NOT NULL
        )"""
    )
    db.execute("CREATE INDEX last_answers_user ON last_answers (user_id)")


# Append only: never edit or reorder an entry once released; add m003_..., m004_... after it.
MIGRATIONS: list[tuple[str, Callable[[sqlite3.Connection], None]]] = [
    ("m001_initial", _m001_initial),
    ("m002_prompt", _m002_prompt),
    ("m003_conversation_state", _m003_conversation_state),
]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


class FeedbackStore:
    """Log interactions and attach ratings and corrections to them."""

    def __init__(self, path: Path | str) -> None:
        self.path = path
        if isinstance(path, Path):
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(
                str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
            )
            self.db.row_factory = sqlite3.Row
            self.db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self.db.execute("PRAGMA journal_mode = WAL")
            self.db.execute("PRAGMA synchronous = FULL")
            self.db.execute("PRAGMA foreign_keys = ON")
        except sqlite3.DatabaseError as exc:
            raise DomainbotError(
                f"The feedback store {path} cannot be opened ({exc}). Expected an SQLite database written by "
                "domainbot; move the file aside to start a new one."
            ) from None
        # One connection serves every thread of this process; the lock keeps their transactions apart.
        self.lock = threading.RLock()
        self.migrate()

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> FeedbackStore:
        return cls(data_dir / FEEDBACK_FILE)

    def close(self) -> None:
        self.db.close()

    def _write(self, action: Callable[[sqlite3.Connection], Any]) -> Any:
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                result = action(self.db)
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")
            return result

    def migrate(self) -> list[str]:
        """Apply the migrations this database has not seen; returns their names."""

        def apply(db: sqlite3.Connection) -> list[str]:
            db.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
            done = {row["name"] for row in db.execute("SELECT name FROM migrations")}
            applied = []
            for name, migration in MIGRATIONS:
                if name not in done:
                    migration(db)
                    db.execute("INSERT INTO migrations (name, applied_at) VALUES (?, ?)", (name, _now()))
                    applied.append(name)
            return applied

        applied: list[str] = self._write(apply)
        return applied

    def log(self, record: InteractionRecord) -> str:
        """Store one interaction; returns its id."""
        interaction_id = uuid.uuid4().hex
        values = (
            interaction_id,
            _now(),
            record.conversation_id,
            record.user_id,
            record.channel,
            record.question,
            record.answer,
            record.model,
            record.adapter,
            json.dumps(record.passage_ids),
            json.dumps(record.timings),
            json.dumps(record.verdicts, default=str),
            json.dumps(record.prompt, ensure_ascii=False),
        )
        columns = "id, created_at, conversation_id, user_id, channel, question, answer, model, adapter, passage_ids, "
        columns += "timings, verdicts, prompt"
        marks = ", ".join("?" * len(values))
        self._write(lambda db: db.execute(f"INSERT INTO interactions ({columns}) VALUES ({marks})", values))
        return interaction_id

    def _require(self, db: sqlite3.Connection, interaction_id: str) -> None:
        if db.execute("SELECT 1 FROM interactions WHERE id = ?", (interaction_id,)).fetchone() is None:
            raise UnknownInteraction(
                f"No interaction {interaction_id!r} in the feedback store (erased, or never logged)."
            )

    def rate(self, interaction_id: str, value: int, score: int | None = None, rater_id: str = "") -> None:
        """Record 👍 (1) or 👎 (-1), optionally a 1-5 score; a rater's new rating replaces their old one."""
        if value not in (-1, 1):
            raise DomainbotError(f"A rating is 1 (up) or -1 (down), got {value!r}.")
        if score is not None and not 1 <= score <= 5:
            raise DomainbotError(f"A score is between 1 and 5, got {score!r}.")

        def upsert(db: sqlite3.Connection) -> None:
            self._require(db, interaction_id)
            db.execute(
                """INSERT INTO ratings (interaction_id, rater_id, value, score, updated_at) VALUES (?, ?, ?, ?, ?)
                   ON CONFLICT (interaction_id, rater_id)
                   DO UPDATE SET value = excluded.value, score = excluded.score, updated_at = excluded.updated_at""",
                (interaction_id, rater_id, value, score, _now()),
            )

        self._write(upsert)

    def correct(self, interaction_id: str, text: str, rater_id: str = "") -> None:
        """Attach the answer the rater says is right. The text must already be PII-masked."""
        if not text.strip():
            raise DomainbotError("A correction needs the right answer as text; got an empty message.")

        def insert(db: sqlite3.Connection) -> None:
            self._require(db, interaction_id)
            db.execute(
                "INSERT INTO corrections (interaction_id, rater_id, text, created_at) VALUES (?, ?, ?, ?)",
                (interaction_id, rater_id, text.strip(), _now()),
            )

        self._write(insert)

    # --- conversation state shared by front-end workers ----------------------------------------------------

    def remember_answer(
        self, conversation_id: str, interaction_id: str | None, user_id: str, citations: list[dict[str, Any]]
    ) -> None:
        """Keep the conversation's last answer and the passages it cites (for /sources), replacing the one before."""

        def upsert(db: sqlite3.Connection) -> None:
            # An interaction erased meanwhile (or never logged) leaves the citations without their link.
            known = interaction_id is not None and db.execute(
                "SELECT 1 FROM interactions WHERE id = ?", (interaction_id,)
            ).fetchone()
            db.execute(
                """INSERT INTO last_answers (conversation_id, interaction_id, user_id, citations, answered_at)
                   VALUES (?, ?, ?, ?, ?)
                   ON CONFLICT (conversation_id) DO UPDATE SET interaction_id = excluded.interaction_id,
                   user_id = excluded.user_id, citations = excluded.citations, answered_at = excluded.answered_at""",
                (conversation_id, interaction_id if known else None, user_id, json.dumps(citations), _now()),
            )

        self._write(upsert)

    def last_answer(self, conversation_id: str) -> tuple[str | None, list[dict[str, Any]]] | None:
        """(interaction id, citations) of the conversation's last answer; None when it has none."""
        with self.lock:
            row = self.db.execute(
                "SELECT interaction_id, citations FROM last_answers WHERE conversation_id = ?", (conversation_id,)
            ).fetchone()
        return None if row is None else (row["interaction_id"], json.loads(row["citations"]))

    def reset_conversation(self, conversation_id: str) -> None:
        """Forget the conversation's last answer and any correction it waits for (the interactions stay)."""

        def delete(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM last_answers WHERE conversation_id = ?", (conversation_id,))
            db.execute("DELETE FROM pending_corrections WHERE conversation_id = ?", (conversation_id,))

        self._write(delete)

    # --- corrections asked for and not yet sent ------------------------------------------------------------

    def await_correction(
        self, conversation_id: str, interaction_id: str, rater_id: str, now: float | None = None
    ) -> None:
        """Remember that the conversation's next message corrects `interaction_id` (replacing an earlier request).
        `now` is wall-clock seconds: the workers that read it back may run on other machines."""

        def upsert(db: sqlite3.Connection) -> None:
            self._require(db, interaction_id)
            db.execute(
                """INSERT INTO pending_corrections (conversation_id, interaction_id, rater_id, requested_at)
                   VALUES (?, ?, ?, ?)
                   ON CONFLICT (conversation_id) DO UPDATE SET interaction_id = excluded.interaction_id,
                   rater_id = excluded.rater_id, requested_at = excluded.requested_at""",
                (conversation_id, interaction_id, rater_id, time.time() if now is None else now),
            )

        self._write(upsert)

    def take_correction(self, conversation_id: str, max_age: float, now: float | None = None) -> str | None:
        """The interaction the conversation's next message corrects, if one was asked for within `max_age`
        seconds; the request is used up either way, by exactly one caller even across processes."""

        def take(db: sqlite3.Connection) -> Any:
            # fetchall: a RETURNING statement must run to its end before the transaction can commit.
            rows = db.execute(
                "DELETE FROM pending_corrections WHERE conversation_id = ? RETURNING interaction_id, requested_at",
                (conversation_id,),
            ).fetchall()
            return rows[0] if rows else None

        row = self._write(take)
        now = time.time() if now is None else now
        if row is None or now - float(row["requested_at"]) > max_age:
            return None
        return str(row["interaction_id"])

    def cancel_correction(self, conversation_id: str) -> bool:
        """Forget a correction asked for in the conversation; returns whether there was one."""

        def delete(db: sqlite3.Connection) -> bool:
            query = "DELETE FROM pending_corrections WHERE conversation_id = ?"
            return bool(db.execute(query, (conversation_id,)).rowcount)

        cancelled: bool = self._write(delete)
        return cancelled

    def get(self, interaction_id: str) -> Interaction:
        with self.lock:
            row = self.db.execute("SELECT * FROM interactions WHERE id = ?", (interaction_id,)).fetchone()
            if row is None:
                raise UnknownInteraction(f"No interaction {interaction_id!r} in the feedback store.")
            return self._interaction(row)

    def interactions(self, user_id: str | None = None) -> Iterator[Interaction]:
        """Every interaction, oldest first, with its ratings and corrections."""
        with self.lock:
            if user_id is None:
                rows = self.db.execute("SELECT * FROM interactions ORDER BY created_at, id").fetchall()
            else:
                query = "SELECT * FROM interactions WHERE user_id = ? ORDER BY created_at, id"
                rows = self.db.execute(query, (user_id,)).fetchall()
            items = [self._interaction(row) for row in rows]
        yield from items

    def _interaction(self, row: sqlite3.Row) -> Interaction:
        ratings = self.db.execute(
            "SELECT rater_id, value, score, updated_at FROM ratings WHERE interaction_id = ? ORDER BY updated_at",
            (row["id"],),
        ).fetchall()
        corrections = self.db.execute(
            "SELECT rater_id, text, created_at FROM corrections WHERE interaction_id = ? ORDER BY id", (row["id"],)
        ).fetchall()
        return Interaction(
            id=row["id"],
            created_at=row["created_at"],
            conversation_id=row["conversation_id"],
            user_id=row["user_id"],
            channel=row["channel"],
            question=row["question"],
            answer=row["answer"],
            model=row["model"],
            adapter=row["adapter"],
            passage_ids=json.loads(row["passage_ids"]),
            timings=json.loads(row["timings"]),
            verdicts=json.loads(row["verdicts"]),
            prompt=json.loads(row["prompt"]),
            ratings=[Rating(**dict(r)) for r in ratings],
            corrections=[Correction(**dict(c)) for c in corrections],
        )

    def forget_user(self, user_id: str) -> int:
        """Erase a user's interactions (with their ratings and corrections); returns how many."""
        if not user_id:
            raise DomainbotError("forget_user needs a user id; an empty one would match anonymous interactions.")

        def delete(db: sqlite3.Connection) -> int:
            db.execute("DELETE FROM pending_corrections WHERE rater_id = ?", (user_id,))
            db.execute("DELETE FROM last_answers WHERE user_id = ?", (user_id,))
            return int(db.execute("DELETE FROM interactions WHERE user_id = ?", (user_id,)).rowcount)

        deleted: int = self._write(delete)
        return deleted

    def stats(self) -> dict[str, int]:
        with self.lock:
            one = self.db.execute
            return {
                "interactions": one("SELECT COUNT(*) FROM interactions").fetchone()[0],
                "ratings_up": one("SELECT COUNT(*) FROM ratings WHERE value = 1").fetchone()[0],
                "ratings_down": one("SELECT COUNT(*) FROM ratings WHERE value = -1").fetchone()[0],
                "corrections": one("SELECT COUNT(*) FROM corrections").fetchone()[0],
            }
