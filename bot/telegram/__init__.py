"""The Telegram front end: chat with the pipeline, rate answers, feed the knowledge base documents."""

from bot.telegram.app import build_application, run_bot, serve
from bot.telegram.config import TelegramConfig
from bot.telegram.core import BotCore
from bot.telegram.engine import Engine

__all__ = ["BotCore", "Engine", "TelegramConfig", "build_application", "run_bot", "serve"]
