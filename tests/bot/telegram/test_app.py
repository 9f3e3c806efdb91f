"""Starting the bot: webhook mode, start-up failures as one line, and no token in any log line."""

from __future__ import annotations

import logging
import secrets
import socket
from pathlib import Path
from typing import Any, cast

import pytest
from pydantic import SecretStr

from bot.errors import DomainbotError
from bot.telegram import BotCore, Engine, TelegramConfig, build_application, run_bot
from bot.telegram.app import check_webhook_support
from tests.bot.telegram.conftest import ALICE, RunningBot, fake_token
from tests.bot.telegram.test_bot import QUESTION, SUPPORTED
from tests.helpers import run_cli
from tests.telegram_fake import fake_bot_api


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_webhook_mode_takes_updates_only_with_the_secret(make_bot: Any) -> None:
    port = free_port()
    secret = secrets.token_urlsafe(16)
    url = f"http://127.0.0.1:{port}/telegram-updates"
    overrides = {
        "mode": "webhook",
        "webhook_url": url,
        "webhook_listen": "127.0.0.1",
        "webhook_port": port,
        "webhook_secret": SecretStr(secret),
    }
    with make_bot(**overrides) as bot:
        assert bot.fake.webhook["url"] == url and bot.fake.webhook["secret_token"] == secret
        assert bot.fake.attempts("getUpdates") == []
        bot.model.enqueue([SUPPORTED])
        alice = bot.fake.user(ALICE)
        assert "two-year warranty" in bot.ask(alice, QUESTION)["text"]
        message = {"message_id": 99, "date": 0, "chat": bot.fake.private_chat(alice), "from": alice, "text": QUESTION}
        forged = {"update_id": 999, "message": message}
        assert bot.fake.post_to_webhook(forged, "wrong-secret") == 403
        assert bot.fake.post_to_webhook(forged, None) == 403
        assert len(bot.model.calls) == 1


def test_webhook_mode_without_its_extra_is_one_clear_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tornado" else real(name, *a))
    config = TelegramConfig(
        token=SecretStr(fake_token()), uploads_dir=tmp_path, mode="webhook", webhook_url="https://bot.example.org/u"
    )
    with pytest.raises(DomainbotError, match=r"domainbot\[webhooks\]"):
        check_webhook_support(config)
    check_webhook_support(TelegramConfig(token=SecretStr(fake_token()), uploads_dir=tmp_path))


def test_without_a_token_the_command_exits_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "telegram")
    assert code == 1 and out == ""
    assert err.strip().startswith("error: TELEGRAM_BOT_TOKEN is not set") and err.strip().count("\n") == 0


def test_a_rejected_token_is_one_line_without_the_token(tmp_path: Path) -> None:
    wrong = fake_token()
    with fake_bot_api(fake_token()) as fake:
        config = TelegramConfig(token=SecretStr(wrong), uploads_dir=tmp_path, api_url=fake.url)
        engine = Engine()
        try:
            app = build_application(BotCore(config, engine, cast(Any, None)))
            with pytest.raises(DomainbotError) as error:
                run_bot(app, config, handle_signals=False)
        finally:
            engine.close()
    assert "rejected TELEGRAM_BOT_TOKEN" in str(error.value) and wrong not in str(error.value)


def test_the_token_never_reaches_the_logs(make_bot: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with make_bot() as bot:
        bot.model.enqueue([SUPPORTED])
        bot.fake.fail("sendMessage", 429, retry_after=1)
        bot.fake.fail("sendChatAction", 500)
        bot.ask(bot.fake.user(ALICE), QUESTION)
        token = bot.config.token.get_secret_value()
        running = cast(RunningBot, bot)
    assert running.fake.attempts("sendMessage")[0].status == 429
    logged = caplog.text + "".join(r.getMessage() for r in caplog.records)
    assert token not in logged and token.split(":")[1] not in logged
    assert "<redacted>" in logged  # the library did log its URLs; the token was taken out
    assert logging.getLogger("httpx").level == logging.WARNING
