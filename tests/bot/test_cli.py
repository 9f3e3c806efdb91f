import json
import subprocess
import sys
from pathlib import Path

import pytest

from bot.cli import main
from bot.errors import DomainbotError
from tests.helpers import run_cli


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "--help")
    assert code == 0
    for command in ("chat", "ask", "config", "model", "start", "eval"):
        assert command in out


def test_config_show_redacts_secrets(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    token = "7" * 10 + ":" + "Q" * 35
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", token)
    monkeypatch.setenv("WOLFRAM_APP_ID", "WOLF-" + "9" * 10)
    code, out, err = run_cli(capsys, "config", "show", "--json")
    assert code == 0
    shown = json.loads(out)
    assert shown["telegram_bot_token"] == "********"
    assert shown["hf_token"] == "(not set)"
    assert token not in out + err and "WOLF-" not in out + err
    code, out, _ = run_cli(capsys, "config", "show")
    assert token not in out and "DOMAINBOT_DATA_DIR" in out


def test_ask_json(capsys: pytest.CaptureFixture[str], tiny_settings, tiny_model_dir: Path) -> None:
    code, out, _ = run_cli(capsys, "ask", "What is the capital of France?", "--json", "--max-tokens", "5")
    assert code == 0
    reply = json.loads(out)
    assert reply["model"] == tiny_model_dir.name
    assert reply["adapter"] is None
    assert reply["usage"]["completion_tokens"] <= 5
    assert {"load", "prompt", "generate", "total"} <= reply["timings"].keys()
    assert isinstance(reply["text"], str)


def test_ask_streams_plain_text(capsys: pytest.CaptureFixture[str], tiny_settings) -> None:
    code, out, _ = run_cli(capsys, "ask", "Hello?", "--max-tokens", "4")
    assert code == 0
    assert out.endswith("\n")
    assert not out.lstrip().startswith("{")


def test_chat_reads_piped_questions(
    capsys: pytest.CaptureFixture[str], tiny_settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO("one\n/reset\ntwo\n"))
    code, out, _ = run_cli(capsys, "chat", "--max-tokens", "3")
    assert code == 0
    # Two answers and the reset notice, each on one line; the answers' sources are listed under them.
    assert len([line for line in out.splitlines() if not line.startswith("  [")]) == 3


def test_model_info(capsys: pytest.CaptureFixture[str], tiny_settings, tiny_model_dir: Path) -> None:
    code, out, _ = run_cli(capsys, "model", "info", "--json")
    info = json.loads(out)
    assert (code, info["source"], info["device"], info["dtype"]) == (0, "folder", "cpu", "float32")
    assert info["path"] == str(tiny_model_dir)
    assert info["context_window"] == 256


def test_start_without_token_explains(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "start")
    assert code == 0
    assert "TELEGRAM_BOT_TOKEN is not set" in out and "domainbot chat" in out


@pytest.mark.parametrize(
    ("env", "args", "message"),
    [
        ({"DOMAINBOT_MODEL": "/no/such/folder"}, ["ask", "hi"], "not found"),
        ({"DOMAINBOT_TEMPERATURE": "warm"}, ["ask", "hi"], "DOMAINBOT_TEMPERATURE"),
        ({}, ["--config", "missing.yaml", "config", "show"], "does not exist"),
        ({"DOMAINBOT_ADAPTER": "/no/adapter"}, ["model", "info"], "adapter_config.json"),
    ],
)
def test_bad_input_is_one_line_without_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tiny_settings, env, args, message
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code, _out, err = run_cli(capsys, *args)
    assert code == 1
    assert message in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_debug_shows_the_traceback(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOMAINBOT_MODEL", "/no/such/folder")
    with pytest.raises(DomainbotError, match="not found"):
        main(["--debug", "ask", "hi"])


def test_console_script_exit_code_and_stderr(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("temperature: [\n", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "bot.cli", "--config", str(bad), "config", "show"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: Config file") and "not valid YAML" in proc.stderr
    assert "Traceback" not in proc.stderr
