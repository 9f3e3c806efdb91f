"""Keep secrets out of the logs.

The Bot API puts the token in the path of every request URL (`<server>/bot<token>/sendMessage`), and
libraries log those URLs: httpx at INFO for every request, python-telegram-bot at DEBUG when it starts. A
filter on every root handler replaces the secrets in each record, traceback included, before it is written.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from pydantic import SecretStr

MASK = "<redacted>"
_FORMATTER = logging.Formatter()


class RedactSecrets(logging.Filter):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = self.redact(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            record.exc_text = _FORMATTER.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


def protect_logs(secrets: Iterable[SecretStr | None]) -> RedactSecrets:
    """Redact `secrets` from everything the root logger's handlers write, and quiet per-request URL logs."""
    redact = RedactSecrets(s.get_secret_value() for s in secrets if s is not None)
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    for handler in root.handlers:
        for old in [f for f in handler.filters if isinstance(f, RedactSecrets)]:
            handler.removeFilter(old)
        handler.addFilter(redact)
    # httpx logs every request URL at INFO; the token sits in that URL.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return redact
