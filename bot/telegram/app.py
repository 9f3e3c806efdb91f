"""Wiring: the python-telegram-bot Application, its handlers and error handler, and how it runs."""

from __future__ import annotations

import datetime as dt
import functools
import importlib.util
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

from telegram import BotCommand, BotCommandScopeChat, Update
from telegram.constants import UpdateType
from telegram.error import BadRequest, InvalidToken, NetworkError, TelegramError
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    MessageHandler,
    TypeHandler,
    filters,
)

from bot.config import Settings
from bot.errors import DomainbotError
from bot.telegram import handlers, texts
from bot.telegram.config import TelegramConfig
from bot.telegram.core import BotCore
from bot.telegram.delivery import call_api
from bot.telegram.engine import Engine
from bot.telegram.flood import FloodControl
from bot.telegram.redaction import RedactSecrets, protect_logs

log = logging.getLogger(__name__)

ALLOWED_UPDATES = [UpdateType.MESSAGE, UpdateType.CALLBACK_QUERY]
# Updates in progress at once. A question waiting for an engine thread costs only a task, and a low cap would
# make ratings and commands wait behind a queue of questions.
CONCURRENT_UPDATES = 256
# A long poll's HTTP read must outlast the poll itself.
POLL_READ_SLACK = 10.0
BOOTSTRAP_RETRIES = 3


def build_application(
    core: BotCore, on_ready: Callable[[str], None] | None = None
) -> Application[Any, Any, Any, Any, Any, Any]:
    """The Application for `core`, talking to the Bot API server its configuration names; `on_ready` hears
    one line once it is connected."""
    config = core.config
    # Before the Bot exists: it logs its URLs, token included, as it is built.
    protect_logs([config.token, config.webhook_secret])

    async def post_init(app: Application[Any, Any, Any, Any, Any, Any]) -> None:
        await register_commands(app)
        if on_ready is not None:
            on_ready(f"Telegram bot @{app.bot.username} is answering (Ctrl-C stops it).")

    app = (
        ApplicationBuilder()
        .token(config.token.get_secret_value())
        .base_url(config.base_url)
        .base_file_url(config.base_file_url)
        .local_mode(config.local_mode)
        .concurrent_updates(CONCURRENT_UPDATES)
        .rate_limiter(FloodControl())
        .get_updates_read_timeout(config.poll_timeout + POLL_READ_SLACK)
        .post_init(post_init)
        .build()
    )
    app.bot_data[handlers.CORE_KEY] = core
    app.add_handler(TypeHandler(Update, handlers.gate), group=-1)
    commands = {
        "start": handlers.start,
        "help": handlers.start,
        "reset": handlers.reset,
        "sources": handlers.sources,
        "cancel": handlers.cancel,
        "add": handlers.add,
        "kb": handlers.kb,
        "kb_remove": handlers.kb_remove,
        "stats": handlers.stats,
        "export": handlers.export,
        "forget_me": handlers.forget_me,
    }
    for name, callback in commands.items():
        app.add_handler(CommandHandler(name, callback))
    app.add_handler(MessageHandler(filters.Document.ALL, handlers.document))
    app.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, handlers.question))
    app.add_handler(CallbackQueryHandler(handlers.button))
    app.add_handler(MessageHandler(filters.COMMAND, handlers.unknown_command))
    app.add_handler(MessageHandler(filters.ATTACHMENT, handlers.unsupported))
    app.add_error_handler(handlers.on_error)
    return app


async def register_commands(app: Application[Any, Any, Any, Any, Any, Any]) -> None:
    """Show the commands in Telegram's menu: everyone's, plus the admin commands in each admin's chat."""
    core = handlers.core_of_app(app)
    if core.config.mode == "webhook" and core.config.webhook_secret is None:
        log.warning("TELEGRAM_WEBHOOK_SECRET is not set: anyone who learns the webhook URL can post updates.")
    if core.config.open_to_everyone:
        log.warning(
            "No allowed users or chats are configured: the bot answers everyone who writes to it "
            "(set DOMAINBOT_TELEGRAM_ALLOWED_USERS or DOMAINBOT_TELEGRAM_ALLOWED_CHATS to restrict it)."
        )
    public = [BotCommand(name, text) for name, text in texts.COMMANDS]
    every = public + [BotCommand(name, text) for name, text in texts.ADMIN_COMMANDS]
    try:
        await call_api(functools.partial(app.bot.set_my_commands, public))
        for admin in sorted(core.policy.admins):
            try:
                await call_api(functools.partial(app.bot.set_my_commands, every, scope=BotCommandScopeChat(admin)))
            except BadRequest as exc:  # "chat not found" until the admin has written to the bot
                log.info("Admin commands not shown to %s yet (%s); they work when typed", admin, exc.message)
    except TelegramError as exc:
        log.warning("Could not register the command menu (%s); the commands work when typed", exc)


def check_webhook_support(config: TelegramConfig) -> None:
    if config.mode == "webhook" and importlib.util.find_spec("tornado") is None:
        raise DomainbotError(
            "Webhook mode needs the `webhooks` extra, which is not installed. Install it with "
            "pip install 'domainbot[webhooks]', or use long polling (DOMAINBOT_TELEGRAM_MODE=polling)."
        )


def run_bot(
    app: Application[Any, Any, Any, Any, Any, Any], config: TelegramConfig, handle_signals: bool = True
) -> None:
    """Run until stopped (Ctrl-C, SIGTERM, or `app.stop_running()`); start-up failures become one clear line."""
    check_webhook_support(config)
    redact = protect_logs([config.token, config.webhook_secret])  # again: logging may have been set up since
    signals: dict[str, Any] = {} if handle_signals else {"stop_signals": None}
    try:
        if config.mode == "webhook":
            app.run_webhook(
                listen=config.webhook_listen,
                port=config.webhook_port,
                url_path=urlparse(str(config.webhook_url)).path.strip("/"),
                webhook_url=config.webhook_url,
                secret_token=config.webhook_secret.get_secret_value() if config.webhook_secret else None,
                allowed_updates=ALLOWED_UPDATES,
                bootstrap_retries=BOOTSTRAP_RETRIES,
                **signals,
            )
        else:
            app.run_polling(
                timeout=dt.timedelta(seconds=config.poll_timeout),
                allowed_updates=ALLOWED_UPDATES,
                bootstrap_retries=BOOTSTRAP_RETRIES,
                **signals,
            )
    except InvalidToken:
        raise DomainbotError(
            f"The Bot API server at {config.api_url} rejected TELEGRAM_BOT_TOKEN. Expected the token @BotFather "
            "gave the bot; check it and start again."
        ) from None
    except NetworkError as exc:
        raise DomainbotError(_unreachable(config, exc, redact)) from None


def _unreachable(config: TelegramConfig, exc: TelegramError, redact: RedactSecrets) -> str:
    return (
        f"Cannot reach the Bot API server at {config.api_url} ({redact.redact(str(exc))}). Check the network, "
        "or DOMAINBOT_TELEGRAM_API_URL for a self-hosted server."
    )


def serve(settings: Settings, announce: Callable[[str], None] | None = None) -> None:
    """`domainbot telegram`: check the configuration, build the pipeline on an engine thread, then run the
    bot until stopped. `announce` hears what is happening, one line at a time."""
    from bot.services import build_pipeline

    config = TelegramConfig.from_settings(settings)
    check_webhook_support(config)
    if announce is not None:
        announce("Loading the model and the knowledge base…")
    engine = Engine(config.workers)
    try:
        pipeline = engine.call(build_pipeline, settings)
        run_bot(build_application(BotCore(config, engine, pipeline), announce), config)
    finally:
        engine.close()
