"""`domainbot telegram`: the Telegram bot."""

from __future__ import annotations

import typer


def telegram() -> None:
    """Run the Telegram bot until Ctrl-C: long polling, or a webhook with DOMAINBOT_TELEGRAM_MODE=webhook."""
    from bot.cli import settings
    from bot.telegram import serve

    serve(settings(), announce=lambda line: typer.echo(line, err=True))
