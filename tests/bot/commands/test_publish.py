"""`domainbot merge` and `domainbot publish` from the command line."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import make_adapter, run_cli
from tests.hub_fake import FakeHub


@pytest.fixture
def adapter(tiny_model_dir: Path, tmp_path: Path) -> Path:
    make_adapter(tiny_model_dir, tmp_path / "round-1", target_modules=["q_proj", "v_proj", "down_proj"])
    return tmp_path / "round-1"


def ask_raw(capsys: pytest.CaptureFixture[str]) -> str:
    code, out, err = run_cli(capsys, "ask", "What is the capital of France?", "--raw", "--json", "--max-tokens", "8")
    assert code == 0, err
    text: str = json.loads(out)["text"]
    return text


def test_merged_model_answers_like_base_plus_adapter(
    capsys: pytest.CaptureFixture[str], tiny_settings: object, adapter: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, out, err = run_cli(capsys, "merge", str(adapter), "--out", str(tmp_path / "merged"))
    assert code == 0, err
    assert "Merged round-1 into tiny-llama" in out and str(tmp_path / "merged") in out

    base_answer = ask_raw(capsys)
    monkeypatch.setenv("DOMAINBOT_ADAPTER", str(adapter))
    with_adapter = ask_raw(capsys)
    monkeypatch.delenv("DOMAINBOT_ADAPTER")
    monkeypatch.setenv("DOMAINBOT_MODEL", str(tmp_path / "merged"))
    merged_answer = ask_raw(capsys)

    assert merged_answer == with_adapter
    assert with_adapter != base_answer  # the adapter matters, so the comparison above means something


def test_merge_refuses_an_existing_output_without_force(
    capsys: pytest.CaptureFixture[str], tiny_settings: object, adapter: Path, tmp_path: Path
) -> None:
    (tmp_path / "merged").mkdir()
    code, _, err = run_cli(capsys, "merge", str(adapter), "--out", str(tmp_path / "merged"))
    assert code == 1
    assert err.count("\n") == 1 and "already exists" in err and "--force" in err

    code, _, err = run_cli(capsys, "merge", str(adapter), "--out", str(tmp_path / "merged"), "--force")
    assert code == 0, err
    assert (tmp_path / "merged" / "model.safetensors").is_file()


def test_merge_names_a_missing_adapter(capsys: pytest.CaptureFixture[str], tiny_settings: object, tmp_path: Path):
    code, _, err = run_cli(capsys, "merge", "round-9", "--out", str(tmp_path / "merged"))
    assert code == 1
    assert "no registered adapter named 'round-9'" in err
    assert not (tmp_path / "merged").exists()


def test_publish_without_hf_token_says_how_to_set_it(capsys: pytest.CaptureFixture[str], adapter: Path) -> None:
    code, out, err = run_cli(capsys, "publish", str(adapter), "--repo", "someone/round-1")
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "HF_TOKEN is not set" in err and "environment" in err


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch) -> str:
    value = f"test-{secrets.token_hex(20)}"
    monkeypatch.setenv("HF_TOKEN", value)
    return value


@pytest.fixture
def hub(token: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)  # the stand-in speaks LFS, not Xet
    with FakeHub(token) as fake:
        monkeypatch.setenv("DOMAINBOT_HF_ENDPOINT", fake.url)
        yield fake


def test_publish_uploads_to_a_private_repo(
    capsys: pytest.CaptureFixture[str], hub: FakeHub, token: str, adapter: Path
) -> None:
    code, out, err = run_cli(capsys, "publish", str(adapter), "--repo", "someone/round-1", "--json")
    assert code == 0, err
    result = json.loads(out)
    repo = hub.repos["someone/round-1"]
    assert result["private"] is True and repo.private is True
    assert result["commit_url"] == f"{hub.url}/someone/round-1/commit/{repo.commits[-1]}"
    assert repo.files["adapter_model.safetensors"] == (adapter / "adapter_model.safetensors").read_bytes()
    assert token not in out + err


def test_publish_public_says_so(capsys: pytest.CaptureFixture[str], hub: FakeHub, adapter: Path) -> None:
    code, out, err = run_cli(capsys, "publish", str(adapter), "--repo", "someone/open", "--public")
    assert code == 0, err
    assert "Published adapter round-1 to someone/open (public)" in out
    assert hub.repos["someone/open"].private is False


def test_publish_with_a_refused_token_is_one_line_without_it(
    capsys: pytest.CaptureFixture[str], hub: FakeHub, token: str, adapter: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = f"test-{secrets.token_hex(20)}"
    monkeypatch.setenv("HF_TOKEN", wrong)
    code, out, err = run_cli(capsys, "publish", str(adapter), "--repo", "someone/round-1")
    assert code == 1
    assert err.count("\n") == 1 and "did not accept HF_TOKEN" in err
    assert wrong not in out + err and token not in out + err
