"""`domainbot serve`: check where it may listen, build the pipeline, run uvicorn until Ctrl-C."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from bot.config import Settings
from bot.errors import DomainbotError
from bot.http.config import HttpConfig


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def check_bind(host: str, config: HttpConfig, insecure: bool) -> None:
    """Refuse to listen beyond this machine with no API key, unless told to (`--insecure`)."""
    if config.api_key is None and not is_loopback(host) and not insecure:
        raise DomainbotError(
            f"Refusing to listen on {host} without an API key: anyone who can reach it could use the bot, fill "
            "its feedback store with ratings that become training data, and run up its compute. Set "
            "DOMAINBOT_API_KEY (clients send `Authorization: Bearer <key>`), listen on 127.0.0.1, or pass "
            "--insecure if a proxy in front of it checks who may call."
        )


def serve(
    settings: Settings,
    host: str | None = None,
    port: int | None = None,
    insecure: bool = False,
    announce: Callable[[str], None] = print,
) -> None:
    import uvicorn

    from bot.http.app import create_app
    from bot.pipeline import Pipeline

    host, port = host or settings.http_host, port or settings.http_port
    config = HttpConfig.from_settings(settings)
    check_bind(host, config, insecure)  # before the model loads: a refusal should be quick
    pipeline = Pipeline.from_settings(settings)
    app = create_app(pipeline, config)
    keys = "API key required" if config.api_key else "no API key (open to whoever can reach it)"
    kb = "knowledge base endpoints on" if config.admin_key else "knowledge base endpoints off (no admin key)"
    announce(f"domainbot API on http://{host}:{port} ({keys}; {kb}); docs at /docs. Ctrl-C stops it.")
    uvicorn.run(app, host=host, port=port, log_level=settings.log_level.lower(), timeout_graceful_shutdown=5)
