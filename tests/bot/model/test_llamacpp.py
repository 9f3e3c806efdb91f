"""The llama.cpp backend's choices without a model: token choice as the other backends make it, which backend
'auto' and 'llamacpp' open, and the message when llama-cpp-python is missing. The backend itself runs on the
shipped GGUF in tests/integration/test_llamacpp.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from bot.errors import DomainbotError
from bot.model import factory
from bot.model.backend import GenerationParams, choose_next_token
from bot.model.llamacpp import choose_token

real_find_spec = importlib.util.find_spec


def without_llamacpp(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "llama_cpp" else real_find_spec(name, *a)
    )


@pytest.mark.parametrize("penalty", [1.0, 1.3])
def test_greedy_choice_matches_the_torch_backends(penalty: float) -> None:
    rng = np.random.default_rng(0)
    params = GenerationParams(repetition_penalty=penalty)
    for _ in range(20):
        logits = rng.standard_normal(64).astype(np.float32) * 3
        seen = np.unique(rng.integers(0, 64, size=10))
        expected = choose_next_token(torch.from_numpy(logits.copy()), torch.from_numpy(seen), params, None)
        assert choose_token(logits, seen, params, None) == expected


def test_penalty_can_change_the_greedy_choice_and_leaves_the_logits_alone() -> None:
    logits = np.array([2.0, 1.9, -1.0], dtype=np.float32)
    params = GenerationParams(repetition_penalty=1.2)
    assert choose_token(logits, np.array([], dtype=np.int64), params, None) == 0
    assert choose_token(logits, np.array([0]), params, None) == 1
    assert logits.tolist() == pytest.approx([2.0, 1.9, -1.0])


def test_sampling_stays_inside_top_p_and_is_seeded() -> None:
    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05], dtype=np.float32))
    params = GenerationParams(temperature=1.0, top_p=0.7)
    draws = [choose_token(logits, np.array([], dtype=np.int64), params, np.random.default_rng(s)) for s in range(200)]
    assert set(draws) == {0, 1}  # 0.5 + 0.3 reach 0.7; tokens 2 and 3 are cut
    again = [choose_token(logits, np.array([], dtype=np.int64), params, np.random.default_rng(s)) for s in range(200)]
    assert draws == again


def test_llamacpp_backend_without_the_package_says_how_to_install_it(
    tiny_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    without_llamacpp(monkeypatch)
    with pytest.raises(DomainbotError, match=r'pip install -e "\.\[llamacpp\]"') as error:
        factory.open_backend(tiny_settings.model_copy(update={"backend": "llamacpp"}))
    assert "\n" not in str(error.value)


def test_llamacpp_backend_needs_a_gguf(tiny_settings: Any) -> None:
    with pytest.raises(DomainbotError, match=r"needs a GGUF model file, and DOMAINBOT_MODEL \(.*\) has none"):
        factory.open_backend(tiny_settings.model_copy(update={"backend": "llamacpp"}))


def test_auto_takes_native_for_a_model_folder_without_gguf(
    tiny_settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    assert factory.open_backend(tiny_settings).backend.name == "native"
    assert not caplog.records  # nothing to fall back from


def test_auto_without_the_package_takes_native(tiny_settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    without_llamacpp(monkeypatch)
    monkeypatch.setattr(factory, "gguf_model", lambda settings: pytest.fail("llama.cpp is not installed"))
    assert factory.open_backend(tiny_settings).backend.name == "native"


def test_auto_leaves_a_gpu_to_transformers(tiny_settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(factory, "runs_on_cpu", lambda preference: False)
    monkeypatch.setattr(factory, "gguf_model", lambda settings: pytest.fail("llama.cpp is for the CPU"))
    assert factory._open_llamacpp(tiny_settings.model_copy(update={"device": "auto"}), False) is None


@pytest.mark.parametrize(("preference", "expected"), [("cpu", True), ("cuda", False), ("mps", False)])
def test_explicit_devices(preference: str, expected: bool) -> None:
    assert factory.runs_on_cpu(preference) is expected


def test_gguf_model_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_settings: Any) -> None:
    gguf_file = tmp_path / "My-Model.Q4_K_M.gguf"
    found = factory.gguf_model(tiny_settings.model_copy(update={"model": str(gguf_file)}))
    assert found == factory.GgufModel(gguf_file, "My-Model.Q4_K_M")

    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "adapter.gguf").write_bytes(b"")  # a converted adapter is not the model
    assert factory.gguf_model(tiny_settings.model_copy(update={"model": str(folder)})) is None
    (folder / "model.Q8_0.gguf").write_bytes(b"")
    found = factory.gguf_model(tiny_settings.model_copy(update={"model": str(folder)}))
    assert found == factory.GgufModel(folder / "model.Q8_0.gguf", "folder")
