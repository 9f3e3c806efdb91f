"""Reading updates: who sent what, where, and whether it was meant for the bot."""

from __future__ import annotations

import re

from telegram import Message, Update
from telegram.constants import ChatType, MessageEntityType

from bot.telegram.access import Incoming

NOBODY = Incoming(None, None, private=False, addressed=False)


def describe(update: Update, bot_id: int, username: str) -> Incoming:
    """What the gate needs to know. Only new messages and button presses are for the bot: edits, channel posts
    and membership changes are not (an edited question was answered as first sent)."""
    user = update.effective_user
    if user is None:
        return NOBODY
    query = update.callback_query
    if query is not None:
        chat = query.message.chat if query.message is not None else None
        private = chat is None or chat.type == ChatType.PRIVATE
        return Incoming(user.id, chat.id if chat else None, private, addressed=True)
    message = update.message
    if message is None:
        return NOBODY
    private = message.chat.type == ChatType.PRIVATE
    return Incoming(user.id, message.chat.id, private, private or is_addressed(message, bot_id, username))


def is_addressed(message: Message, bot_id: int, username: str) -> bool:
    """In a group: a reply to the bot, a mention of it, or a command (bare, or `/cmd@this_bot`)."""
    replied = message.reply_to_message
    if replied is not None and replied.from_user is not None and replied.from_user.id == bot_id:
        return True
    entities = message.parse_entities() if message.text else message.parse_caption_entities()
    handle = "@" + username.lower()
    for entity, text in entities.items():
        if entity.type == MessageEntityType.MENTION and text.lower() == handle:
            return True
        if entity.type == MessageEntityType.TEXT_MENTION and entity.user is not None and entity.user.id == bot_id:
            return True
        if entity.type == MessageEntityType.BOT_COMMAND and entity.offset == 0:
            _, _, target = text.partition("@")
            return not target or target.lower() == username.lower()
    return False


def question_text(message: Message, username: str) -> str:
    """The message's text without mentions of the bot."""
    text = message.text or ""
    return re.sub(rf"@{re.escape(username)}\b", " ", text, flags=re.IGNORECASE).strip() if username else text.strip()
