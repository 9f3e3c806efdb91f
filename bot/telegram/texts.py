"""What the bot says, in one place: commands, help, acknowledgements, refusals and reports (bot HTML)."""

from __future__ import annotations

from collections.abc import Sequence

from bot.telegram.core import BotStats, SourceInfo
from bot.telegram.formatting import escape
from knowledge import FileResult

COMMANDS = [
    ("help", "What I can do"),
    ("reset", "Start a new conversation"),
    ("sources", "The passages behind my last answer"),
    ("kb", "The documents I know"),
    ("cancel", "Stop a correction"),
    ("forget_me", "Erase what I logged of your questions"),
]
ADMIN_COMMANDS = [
    ("add", "Add a document (send it with /add as caption)"),
    ("kb_remove", "Remove a document: /kb_remove NAME"),
    ("stats", "Interactions, ratings, knowledge base, adapter"),
    ("export", "The feedback collected so far, as files"),
]

REFUSED_USER = (
    "Sorry, this bot only talks to people on its allow-list. If you should have access, ask its operator to "
    "add your Telegram id: <code>{user_id}</code>."
)
REFUSED_CHAT = (
    "Sorry, this bot is not enabled in this group. Its operator can allow the group id <code>{chat_id}</code>."
)
SLOW_DOWN = "You're sending messages faster than I can answer. Please wait about {seconds} s and try again."
SOMETHING_WENT_WRONG = "Sorry, something went wrong while handling that. Please try again."
EMPTY_MENTION = "Yes? Ask me a question, for example: <i>How do I add documents?</i>"
UNSUPPORTED = "I can only read text messages (and documents, from admins). Please type your question."
ADMINS_ONLY_DOCUMENTS = "Only the bot's admins can add documents to its knowledge base."
ADD_USAGE = "Send the document as a file with <code>/add</code> as its caption, or reply <code>/add</code> to a file."
REMOVE_USAGE = "Which document? <code>/kb_remove NAME</code>, with the name as /kb lists it."
UNKNOWN_COMMAND = "I don't know that command. /help lists what I can do."
RESET_DONE = "Done: I've forgotten our conversation. Ask me anything."
NO_ANSWER_YET = "I haven't answered anything in this conversation yet."
NO_CITATIONS = "My last answer didn't cite any passages."
STALE_BUTTON = "This button no longer works."
GONE = "That answer is no longer stored (it may have been erased), so it can't be rated or corrected."
RATED = {1: "Thanks, noted 👍", -1: "Thanks, noted 👎. A correction (✍️) helps even more."}
ASK_CORRECTION = "{name}, what should the answer have been? Reply to this message with the right answer, or /cancel."
CORRECTION_HINT = "Send the right answer"
CORRECTION_SAVED = "Thanks! I saved your correction; it will be used to train the next version."
CANCELLED = "Cancelled."
NOTHING_TO_CANCEL = "There was nothing to cancel."
NOTHING_TO_EXPORT = "Nothing to export yet: no answer has been rated or corrected."
READING = "📥 Reading {name}…"
DOWNLOAD_FAILED = "❌ I couldn't download {name}: {reason}"


def welcome(first_name: str, admin: bool) -> str:
    lines = [
        f"Hello {escape(first_name)}! Ask me a question and I'll answer from my knowledge base, citing my sources.",
        "Rate each answer with 👍 / 👎, or press ✍️ Correct and tell me the right answer.",
        "",
        *(f"/{name} — {escape(text)}" for name, text in COMMANDS),
    ]
    if admin:
        lines += ["", "<b>Admin</b>", "Send me a document to add it to the knowledge base."]
        lines += [f"/{name} — {escape(text)}" for name, text in ADMIN_COMMANDS]
    return "\n".join(lines)


def ingest_report(outcome: FileResult) -> str:
    name = escape(outcome.name)
    if outcome.outcome == "failed":
        return f"❌ {name} was not added: {escape(outcome.reason)}"
    if outcome.outcome == "unchanged":
        return f"✅ {name} is already in the knowledge base, unchanged ({outcome.chunks} passages)."
    verb = "replaced the earlier version" if outcome.outcome == "replaced" else "added"
    return f"✅ {name}: {verb}, {outcome.chunks} passages. It is searchable now."


def source_list(sources: Sequence[SourceInfo]) -> str:
    if not sources:
        return "The knowledge base is empty. Admins can send me documents to add."
    lines = [f"<b>{len(sources)} documents</b>"]
    lines += [f"• <code>{escape(s.name)}</code> — {escape(s.title)} ({s.chunks} passages)" for s in sources]
    return "\n".join(lines)


def removed(name: str, chunks: int) -> str:
    return f"Removed <code>{escape(name)}</code> ({chunks} passages)."


def stats_report(stats: BotStats) -> str:
    adapter = escape(stats.adapter) if stats.adapter else "none (base model)"
    return "\n".join(
        [
            "<b>Statistics</b>",
            f"Interactions: {stats.interactions}",
            f"Ratings: {stats.ratings_up} 👍, {stats.ratings_down} 👎; corrections: {stats.corrections}",
            f"Knowledge base: {stats.documents} documents, {stats.passages} passages, {stats.store_bytes / 1e6:.1f} MB",
            f"Model: {escape(stats.model)}",
            f"Adapter: {adapter}",
        ]
    )


def forgotten(count: int) -> str:
    plural = "" if count == 1 else "s"
    return f"Done: I erased {count} logged interaction{plural} of yours, with their ratings and corrections."
