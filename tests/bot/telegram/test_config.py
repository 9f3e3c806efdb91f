"""The Telegram settings: read from the environment under their documented names, checked at start."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.config import load_settings
from bot.errors import DomainbotError
from bot.telegram.config import BOT_API_DOWNLOAD_LIMIT, TelegramConfig
from tests.bot.telegram.conftest import fake_token


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch, clean_env: Path) -> None:
    token = fake_token()
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", token)
    monkeypatch.setenv("DOMAINBOT_TELEGRAM_API_URL", "http://127.0.0.1:8081/")
    monkeypatch.setenv("DOMAINBOT_TELEGRAM_ADMINS", "11, 12")
    monkeypatch.setenv("DOMAINBOT_TELEGRAM_ALLOWED_CHATS", "[-1001234]")
    monkeypatch.setenv("DOMAINBOT_TELEGRAM_RATE_LIMIT", "5")
    config = TelegramConfig.from_settings(load_settings())
    assert config.token.get_secret_value() == token
    assert config.base_url == "http://127.0.0.1:8081/bot"
    assert config.base_file_url == "http://127.0.0.1:8081/file/bot"
    assert (config.admins, config.allowed_chats, config.rate_limit) == ({11, 12}, {-1001234}, 5)
    assert config.uploads_dir == clean_env / "telegram-uploads"
    assert not config.open_to_everyone
    assert token not in repr(config)


def test_id_lists_from_a_config_file(tmp_path: Path) -> None:
    config = tmp_path / "bot.yaml"
    config.write_text("telegram_allowed_users: [1, 2]\ntelegram_admins: '3'\n", encoding="utf-8")
    settings = load_settings(config)
    assert (settings.telegram_allowed_users, settings.telegram_admins) == ([1, 2], [3])


def test_a_bad_id_list_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOMAINBOT_TELEGRAM_ALLOWED_USERS", "12, alice")
    with pytest.raises(DomainbotError, match=r"DOMAINBOT_TELEGRAM_ALLOWED_USERS.*numeric Telegram ids"):
        load_settings()


def test_no_token_is_one_clear_line() -> None:
    with pytest.raises(DomainbotError) as error:
        TelegramConfig.from_settings(load_settings())
    assert "TELEGRAM_BOT_TOKEN is not set" in str(error.value) and "\n" not in str(error.value)


def test_webhook_mode_needs_its_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", fake_token())
    monkeypatch.setenv("DOMAINBOT_TELEGRAM_MODE", "webhook")
    with pytest.raises(DomainbotError, match="DOMAINBOT_TELEGRAM_WEBHOOK_URL"):
        TelegramConfig.from_settings(load_settings())
    monkeypatch.setenv("DOMAINBOT_TELEGRAM_WEBHOOK_URL", "ftp://example.org/hook")
    with pytest.raises(DomainbotError, match="http"):
        TelegramConfig.from_settings(load_settings())


def test_downloads_are_capped_at_20_mb_unless_the_server_runs_in_local_mode(tmp_path: Path) -> None:
    config = TelegramConfig(token=SecretStr(fake_token()), uploads_dir=tmp_path, max_document_mb=50)
    assert config.download_limit == BOT_API_DOWNLOAD_LIMIT
    local = TelegramConfig(token=SecretStr(fake_token()), uploads_dir=tmp_path, max_document_mb=50, local_mode=True)
    assert local.download_limit == 50_000_000


def test_a_webhook_secret_telegram_would_refuse_is_caught_without_showing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "not valid: " + "x" * 20
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", fake_token())
    monkeypatch.setenv("TELEGRAM_WEBHOOK_SECRET", secret)
    with pytest.raises(DomainbotError, match="TELEGRAM_WEBHOOK_SECRET") as error:
        TelegramConfig.from_settings(load_settings())
    assert secret not in str(error.value)
