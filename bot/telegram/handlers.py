"""The handlers: each parses its update, calls the core, formats the result and sends it.

`gate` runs before all of them (handler group -1) and stops what the bot must not act on.
"""

from __future__ import annotations

import functools
import logging
import tempfile
from pathlib import Path
from typing import Any, cast

from telegram import Document, ForceReply, Message, Update, User
from telegram.error import BadRequest, Forbidden, TelegramError
from telegram.ext import Application, ApplicationHandlerStop, ContextTypes

from bot.feedback import UnknownInteraction
from bot.telegram import texts
from bot.telegram.core import BotCore, UserError
from bot.telegram.delivery import LiveReply, call_api, edit_html, send_html, typing
from bot.telegram.formatting import escape, render_answer, render_passages, to_plain
from bot.telegram.keyboards import parse_press, rating_keyboard
from bot.telegram.updates import describe, question_text

log = logging.getLogger(__name__)

CORE_KEY = "domainbot"
Context = ContextTypes.DEFAULT_TYPE


def core_of(context: Context) -> BotCore:
    return cast(BotCore, context.bot_data[CORE_KEY])


def core_of_app(app: Application[Any, Any, Any, Any, Any, Any]) -> BotCore:
    return cast(BotCore, app.bot_data[CORE_KEY])


def _sender(update: Update) -> tuple[Message, User]:
    message, user = update.effective_message, update.effective_user
    if message is None or user is None:
        raise ApplicationHandlerStop  # the gate lets only messages with a sender through; nothing to answer
    return message, user


async def _reply(context: Context, message: Message, markup: str) -> list[Message]:
    return await send_html(context.bot, message.chat.id, markup, reply_to=message.message_id)


async def gate(update: Update, context: Context) -> None:
    """Stop updates not meant for the bot; refuse strangers once; ask hasty users to slow down once."""
    verdict = core_of(context).gate.check(describe(update, context.bot.id, context.bot.username))
    if verdict.action == "pass":
        return
    if verdict.action == "refuse":
        user, chat = update.effective_user, update.effective_chat
        private = chat is None or chat.type == chat.PRIVATE
        text = (
            texts.REFUSED_USER.format(user_id=user.id if user else "?")
            if private
            else texts.REFUSED_CHAT.format(chat_id=chat.id if chat else "?")
        )
        await _notify(update, context, text)
    elif verdict.action == "slow_down":
        await _notify(update, context, texts.SLOW_DOWN.format(seconds=max(1, round(verdict.retry_in))))
    raise ApplicationHandlerStop


async def _notify(update: Update, context: Context, markup: str) -> None:
    """A short note to whoever sent the update: a toast for a button press, a reply for a message."""
    query, message = update.callback_query, update.effective_message
    if query is not None:
        await call_api(lambda: query.answer(_plain(markup), show_alert=True))
    elif message is not None:
        await _reply(context, message, markup)


def _plain(markup: str) -> str:
    return to_plain(markup)[:200]  # a callback answer holds at most 200 characters


async def start(update: Update, context: Context) -> None:
    """Greet the user and list what the bot can do."""
    message, user = _sender(update)
    await _reply(context, message, texts.welcome(user.first_name, core_of(context).is_admin(user.id)))


async def reset(update: Update, context: Context) -> None:
    """Forget the conversation so far."""
    message, user = _sender(update)
    await core_of(context).reset(message.chat.id, user.id)
    await _reply(context, message, texts.RESET_DONE)


async def sources(update: Update, context: Context) -> None:
    """Show the full passages the last answer cites."""
    message, user = _sender(update)
    passages = await core_of(context).last_sources(message.chat.id, user.id)
    if passages is None:
        await _reply(context, message, texts.NO_ANSWER_YET)
        return
    await _reply(context, message, render_passages(passages) if passages else texts.NO_CITATIONS)


async def cancel(update: Update, context: Context) -> None:
    """Stop waiting for a correction."""
    message, user = _sender(update)
    cancelled = await core_of(context).cancel_correction(message.chat.id, user.id)
    await _reply(context, message, texts.CANCELLED if cancelled else texts.NOTHING_TO_CANCEL)


async def question(update: Update, context: Context) -> None:
    """Answer a text message (or store it as the correction its sender was asked for)."""
    message, user = _sender(update)
    core = core_of(context)
    chat_id = message.chat.id
    corrected = await core.take_correction(chat_id, user.id)
    if corrected is not None:
        try:
            await core.correct(corrected, message.text or "", user.id)
        except UnknownInteraction:
            raise UserError(texts.GONE) from None
        await _reply(context, message, texts.CORRECTION_SAVED)
        return
    text = question_text(message, context.bot.username)
    if not text:
        await _reply(context, message, texts.EMPTY_MENTION)
        return
    async with core.turn(chat_id):
        live = LiveReply(context.bot, chat_id, message.message_id, core.config.stream_interval)
        async with typing(context.bot, chat_id):
            answer = await core.ask(chat_id, user.id, text, live.feeder())
        keyboard = rating_keyboard(answer.interaction_id) if answer.interaction_id else None
        await live.finish(render_answer(answer), keyboard)


async def button(update: Update, context: Context) -> None:
    """Store a 👍 / 👎 rating, or ask for the right answer after "Correct"."""
    query, user = update.callback_query, update.effective_user
    if query is None or user is None:
        return
    core = core_of(context)
    press = parse_press(query.data)
    if press is None:
        await call_api(lambda: query.answer(texts.STALE_BUTTON))
        return
    if press.choice != "correct":
        try:
            await core.rate(press.interaction_id, press.value, user.id)
        except UnknownInteraction:
            await call_api(lambda: query.answer(texts.GONE, show_alert=True))
            return
        await call_api(lambda: query.answer(texts.RATED[press.value]))
        return
    # The right answer is asked for in the answer's chat; a button too old to say which can't start it.
    chat = query.message.chat if query.message is not None else None
    if chat is None:
        await call_api(lambda: query.answer(texts.STALE_BUTTON))
        return
    try:
        await core.start_correction(chat.id, user.id, press.interaction_id)
    except UnknownInteraction:
        await call_api(lambda: query.answer(texts.GONE, show_alert=True))
        return
    await call_api(lambda: query.answer(texts.CORRECTION_HINT))
    mention = f'<a href="tg://user?id={user.id}">{escape(user.first_name)}</a>'
    # selective: in a group only the mentioned user's client opens the reply field.
    await call_api(
        lambda: context.bot.send_message(
            chat.id,
            texts.ASK_CORRECTION.format(name=mention),
            parse_mode="HTML",
            reply_markup=ForceReply(selective=True, input_field_placeholder="The right answer"),
        )
    )


async def document(update: Update, context: Context) -> None:
    """Add a document an admin sent to the knowledge base."""
    message, user = _sender(update)
    if message.document is not None:
        await _add_document(context, message, user, message.document)


async def add(update: Update, context: Context) -> None:
    """/add as a reply to a document: add that document (a document with /add as caption comes as a file)."""
    message, user = _sender(update)
    replied = message.reply_to_message
    if replied is None or replied.document is None:
        await _reply(context, message, texts.ADD_USAGE)
        return
    await _add_document(context, message, user, replied.document)


async def _add_document(context: Context, message: Message, user: User, file: Document) -> None:
    core = core_of(context)
    if not core.is_admin(user.id):
        raise UserError(texts.ADMINS_ONLY_DOCUMENTS)
    name = core.check_upload(file.file_name, file.file_size)
    status = (await _reply(context, message, texts.READING.format(name=escape(name))))[-1]
    path = core.incoming_path(name)
    try:
        try:
            remote = await call_api(lambda: context.bot.get_file(file.file_id))
            await call_api(lambda: remote.download_to_drive(path))
        except BadRequest as exc:  # e.g. "file is too big" from a server with a lower limit
            report = texts.DOWNLOAD_FAILED.format(name=escape(name), reason=escape(exc.message))
        else:
            report = texts.ingest_report(await core.ingest(path, name))
    finally:
        path.unlink(missing_ok=True)
    await edit_html(context.bot, message.chat.id, status.message_id, report)


async def kb(update: Update, context: Context) -> None:
    """List the documents in the knowledge base."""
    message, _ = _sender(update)
    await _reply(context, message, texts.source_list(await core_of(context).sources()))


async def kb_remove(update: Update, context: Context) -> None:
    """Remove a document from the knowledge base (admins)."""
    message, user = _sender(update)
    core = core_of(context)
    core.require_admin(user.id)
    name = (message.text or "").partition(" ")[2].strip()
    if not name:
        await _reply(context, message, texts.REMOVE_USAGE)
        return
    removed, chunks = await core.remove(name)
    await _reply(context, message, texts.removed(removed, chunks))


async def stats(update: Update, context: Context) -> None:
    """Interactions, ratings, knowledge-base size and the active adapter (admins)."""
    message, user = _sender(update)
    core = core_of(context)
    core.require_admin(user.id)
    await _reply(context, message, texts.stats_report(await core.stats()))


async def export(update: Update, context: Context) -> None:
    """Send the feedback collected so far as files (admins, in a private chat)."""
    message, user = _sender(update)
    core = core_of(context)
    core.require_admin(user.id)
    if message.chat.type != message.chat.PRIVATE:
        raise UserError("Feedback data is only sent in a private chat with me; send /export there.")
    with tempfile.TemporaryDirectory() as folder:
        files = await core.export(Path(folder))
        if not files:
            await _reply(context, message, texts.NOTHING_TO_EXPORT)
            return
        for path in files:
            send = functools.partial(context.bot.send_document, message.chat.id, path.read_bytes(), filename=path.name)
            await call_api(send)


async def forget_me(update: Update, context: Context) -> None:
    """Erase the user's logged interactions."""
    message, user = _sender(update)
    await _reply(context, message, texts.forgotten(await core_of(context).forget(user.id)))


async def unknown_command(update: Update, context: Context) -> None:
    """Point to /help (in private chats; in groups the command may be another bot's)."""
    message, _ = _sender(update)
    if message.chat.type == message.chat.PRIVATE:
        await _reply(context, message, texts.UNKNOWN_COMMAND)


async def unsupported(update: Update, context: Context) -> None:
    """Say politely that stickers, photos, voice and the like can't be read."""
    message, _ = _sender(update)
    await _reply(context, message, texts.UNSUPPORTED)


async def on_error(update: object, context: Context) -> None:
    """Log what failed and tell the user; the bot goes on with the next update."""
    error = context.error
    if isinstance(error, Forbidden):  # the user blocked the bot, or it was removed from the group
        log.info("Telegram refused a message to this chat: %s", error)
        return
    if isinstance(error, UserError):
        log.debug("Refused a request: %s", error)
        text = escape(str(error))
    else:
        log.error("Handling an update failed", exc_info=error)
        text = texts.SOMETHING_WENT_WRONG
    if not isinstance(update, Update) or (update.callback_query is None and update.effective_message is None):
        return  # a polling or network error: nobody to tell
    try:
        await _notify(update, context, text)
    except TelegramError as exc:
        log.warning("Could not tell the user about the failure either: %s", exc)
