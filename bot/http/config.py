"""The HTTP API's settings, taken from the bot's: keys, limits, how many answers run at once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from bot.config import Settings

UPLOADS_DIR = "http-uploads"
# Room for a multipart envelope (boundaries, part headers, the form's other fields) around an uploaded file.
MULTIPART_OVERHEAD = 64 * 1024


@dataclass(frozen=True)
class HttpConfig:
    uploads_dir: Path
    """Where uploaded documents are kept: the knowledge base names each by this path."""
    api_key: SecretStr | None = None
    """Bearer key for every /v1 endpoint; None leaves them open (allowed on loopback only, see `serve`)."""
    admin_key: SecretStr | None = None
    """Bearer key for /v1/kb; None turns those endpoints off."""
    workers: int = 4
    """Answers generated at once; more wait for a free worker."""
    max_body_bytes: int = 1 << 20
    """Largest JSON body."""
    max_document_bytes: int = 20_000_000
    """Largest uploaded document (the knowledge base's own limit)."""

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"`workers` must be at least 1, got {self.workers}.")
        if self.max_body_bytes < 1 or self.max_document_bytes < 1:
            raise ValueError("body limits must be positive")

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpConfig:
        return cls(
            uploads_dir=settings.data_dir / UPLOADS_DIR,
            api_key=settings.api_key if settings.api_key and settings.api_key.get_secret_value() else None,
            admin_key=settings.admin_key if settings.admin_key and settings.admin_key.get_secret_value() else None,
            workers=settings.http_workers,
            max_body_bytes=settings.http_max_body_kb * 1024,
            max_document_bytes=int(settings.max_document_mb * 1_000_000),
        )

    @property
    def max_upload_bytes(self) -> int:
        return self.max_document_bytes + MULTIPART_OVERHEAD
