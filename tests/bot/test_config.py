from pathlib import Path

import pytest

from bot.config import EMBEDDED_MODEL, describe_settings, env_name, load_settings
from bot.errors import DomainbotError


def fake_telegram_token() -> str:
    # Built at run time so no token-shaped literal sits in the repository.
    return "1" * 9 + ":" + "AbC" * 12


def test_defaults(clean_env: Path) -> None:
    settings = load_settings()
    assert settings.model == EMBEDDED_MODEL
    assert settings.data_dir == clean_env
    assert settings.models_dir == clean_env / "models"
    assert settings.telegram_bot_token is None


def test_environment_sets_values(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOMAINBOT_MAX_NEW_TOKENS", "12")
    monkeypatch.setenv("DOMAINBOT_MODEL", "/models/x")
    monkeypatch.setenv("DOMAINBOT_MODEL_CACHE_DIR", str(tmp_path / "cache"))
    settings = load_settings()
    assert (settings.max_new_tokens, settings.model) == (12, "/models/x")
    assert settings.models_dir == tmp_path / "cache"


def test_yaml_file_ranks_below_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "bot.yaml"
    config.write_text("temperature: 0.5\nmax_new_tokens: 99\nsystem_prompt: Be brief.\n", encoding="utf-8")
    monkeypatch.setenv("DOMAINBOT_MAX_NEW_TOKENS", "7")
    settings = load_settings(config)
    assert settings.temperature == 0.5
    assert settings.system_prompt == "Be brief."
    assert settings.max_new_tokens == 7


def test_config_file_from_environment_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "bot.yaml"
    config.write_text("top_p: 0.5\n", encoding="utf-8")
    monkeypatch.setenv("DOMAINBOT_CONFIG", str(config))
    assert load_settings().top_p == 0.5


def test_dotenv_in_working_directory(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("DOMAINBOT_SEED=5\n", encoding="utf-8")
    assert load_settings().seed == 5


def test_secrets_come_from_environment_and_are_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    token = fake_telegram_token()
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", token)
    monkeypatch.setenv("HF_TOKEN", "hf_" + "z" * 34)
    settings = load_settings()
    assert settings.telegram_bot_token is not None
    assert settings.telegram_bot_token.get_secret_value() == token
    shown = repr(settings) + str(describe_settings(settings))
    assert token not in shown
    assert "hf_" + "z" * 34 not in shown
    assert dict((name, value) for name, value, _, _ in describe_settings(settings))["telegram_bot_token"] == "********"


@pytest.mark.parametrize("secret", ["telegram_bot_token", "wolfram_app_id", "hf_token"])
def test_secrets_in_config_file_are_refused(tmp_path: Path, secret: str) -> None:
    config = tmp_path / "bot.yaml"
    config.write_text(f"{secret}: something\n", encoding="utf-8")
    with pytest.raises(DomainbotError, match=f"only from the environment \\({env_name(secret)}\\)"):
        load_settings(config)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("temperature: [1, 2\n", "not valid YAML"),
        ("- a\n- b\n", "must be a mapping"),
        ("tempreature: 0.3\n", "unknown setting.*tempreature"),
        ("temperature: hot\n", "Invalid setting 'temperature'.*'temperature' in"),
    ],
)
def test_bad_config_files(tmp_path: Path, content: str, message: str) -> None:
    config = tmp_path / "bot.yaml"
    config.write_text(content, encoding="utf-8")
    with pytest.raises(DomainbotError, match=message):
        load_settings(config)


def test_missing_and_unreadable_config_files(tmp_path: Path) -> None:
    with pytest.raises(DomainbotError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml")
    with pytest.raises(DomainbotError, match="cannot be read"):
        load_settings(tmp_path)  # a folder
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage\x80")
    with pytest.raises(DomainbotError, match="cannot be read"):
        load_settings(binary)


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("DOMAINBOT_TEMPERATURE", "abc", "DOMAINBOT_TEMPERATURE.*valid number.*got 'abc'"),
        ("DOMAINBOT_DEVICE", "tpu", "DOMAINBOT_DEVICE.*'auto', 'cpu', 'cuda' or 'mps'.*got 'tpu'"),
        ("DOMAINBOT_MAX_NEW_TOKENS", "0", "DOMAINBOT_MAX_NEW_TOKENS.*greater than or equal to 1"),
        ("DOMAINBOT_TOP_P", "1.5", "DOMAINBOT_TOP_P.*less than or equal to 1"),
    ],
)
def test_invalid_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(DomainbotError, match=expected):
        load_settings()
