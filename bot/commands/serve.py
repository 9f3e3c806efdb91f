"""`domainbot serve`: the HTTP API (answers, feedback, knowledge base, OpenAI-compatible chat)."""

from __future__ import annotations

from typing import Annotated

import typer


def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (default DOMAINBOT_HTTP_HOST, 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="Port to listen on (default DOMAINBOT_HTTP_PORT, 8080).")
    ] = None,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure", help="Listen beyond this machine without DOMAINBOT_API_KEY (a proxy checks the callers)."
        ),
    ] = False,
) -> None:
    """Serve the bot over HTTP until Ctrl-C: /v1/answer, /v1/feedback, /v1/kb, /v1/chat/completions, /healthz."""
    from bot.cli import settings
    from bot.http import serve as run_server

    run_server(settings(), host, port, insecure, announce=lambda line: typer.echo(line, err=True))
