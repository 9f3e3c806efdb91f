"""What the Telegram front end reads from the settings, checked once at start."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from pydantic import SecretStr

from bot.config import TELEGRAM_API_URL, Settings
from bot.errors import DomainbotError

# The public Bot API serves files up to 20 MB; a self-hosted server in --local mode has no such limit.
BOT_API_DOWNLOAD_LIMIT = 20 * 1024 * 1024
UPLOADS_DIR = "telegram-uploads"


@dataclass(frozen=True)
class TelegramConfig:
    """The Telegram bot's settings; `from_settings` builds it and refuses a start that cannot work."""

    token: SecretStr
    uploads_dir: Path
    """Where documents sent by admins are kept: the knowledge base names each by this path."""
    api_url: str = TELEGRAM_API_URL
    local_mode: bool = False
    mode: Literal["polling", "webhook"] = "polling"
    webhook_url: str | None = None
    webhook_listen: str = "127.0.0.1"
    webhook_port: int = 8443
    webhook_secret: SecretStr | None = None
    poll_timeout: float = 30.0
    admins: frozenset[int] = field(default_factory=frozenset)
    allowed_users: frozenset[int] = field(default_factory=frozenset)
    allowed_chats: frozenset[int] = field(default_factory=frozenset)
    rate_limit: int = 20
    rate_window: float = 60.0
    stream_interval: float = 0.0
    max_document_mb: float = 20.0
    workers: int = 1
    """Questions of different chats answered at once (see `Engine`)."""

    def __post_init__(self) -> None:
        if not self.token.get_secret_value().strip():
            raise DomainbotError("TELEGRAM_BOT_TOKEN is empty. Expected the token @BotFather gave the bot.")
        if self.mode == "webhook":
            if not self.webhook_url:
                raise DomainbotError(
                    "DOMAINBOT_TELEGRAM_MODE is 'webhook' but DOMAINBOT_TELEGRAM_WEBHOOK_URL is not set. Expected "
                    "the public HTTPS URL Telegram should post updates to, or DOMAINBOT_TELEGRAM_MODE=polling."
                )
            scheme = urlparse(self.webhook_url).scheme
            if scheme not in ("http", "https"):
                raise DomainbotError(
                    f"DOMAINBOT_TELEGRAM_WEBHOOK_URL must be an http(s) URL, got {self.webhook_url!r}."
                )
        secret = self.webhook_secret.get_secret_value() if self.webhook_secret else None
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", secret):
            raise DomainbotError(
                f"TELEGRAM_WEBHOOK_SECRET must be 1 to 256 letters, digits, _ or -; the one set has {len(secret)} "
                "characters, some of them others. Choose a new one."
            )

    @classmethod
    def from_settings(cls, settings: Settings) -> TelegramConfig:
        if settings.telegram_bot_token is None:
            raise DomainbotError(
                "TELEGRAM_BOT_TOKEN is not set. Create a bot with @BotFather, put its token in the environment "
                "as TELEGRAM_BOT_TOKEN, and start again (or chat in the terminal: domainbot chat)."
            )
        return cls(
            token=settings.telegram_bot_token,
            uploads_dir=settings.data_dir / UPLOADS_DIR,
            api_url=settings.telegram_api_url,
            local_mode=settings.telegram_local_mode,
            mode=settings.telegram_mode,
            webhook_url=settings.telegram_webhook_url,
            webhook_listen=settings.telegram_webhook_listen,
            webhook_port=settings.telegram_webhook_port,
            webhook_secret=settings.telegram_webhook_secret,
            poll_timeout=settings.telegram_poll_timeout,
            admins=frozenset(settings.telegram_admins),
            allowed_users=frozenset(settings.telegram_allowed_users),
            allowed_chats=frozenset(settings.telegram_allowed_chats),
            rate_limit=settings.telegram_rate_limit,
            rate_window=settings.telegram_rate_window,
            stream_interval=settings.telegram_stream_interval,
            max_document_mb=settings.max_document_mb,
            workers=settings.telegram_workers,
        )

    @property
    def base_url(self) -> str:
        """Bot API methods live under <server>/bot<token>/ (PTB appends the token)."""
        return self.api_url.rstrip("/") + "/bot"

    @property
    def base_file_url(self) -> str:
        return self.api_url.rstrip("/") + "/file/bot"

    @property
    def download_limit(self) -> int:
        """Largest document, in bytes, the bot can fetch and the knowledge base accepts."""
        accepted = int(self.max_document_mb * 1_000_000)
        return accepted if self.local_mode else min(accepted, BOT_API_DOWNLOAD_LIMIT)

    @property
    def open_to_everyone(self) -> bool:
        return not self.allowed_users and not self.allowed_chats
