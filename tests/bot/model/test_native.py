from pathlib import Path

import pytest
import torch

from bot.errors import DomainbotError
from bot.model.backend import GenerationParams, GenerationResult, TransformersBackend
from bot.model.factory import open_backend
from bot.model.llama import load_llama, read_config, unsupported_reason
from bot.model.loader import load_model
from bot.model.native import NativeLlamaBackend, adapter_unsupported_reason
from tests.helpers import build_tiny_model, make_adapter

MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is the capital of France? 서울은?"},
]
CPU = torch.device("cpu")


def native(folder: Path, adapter: Path | None = None) -> NativeLlamaBackend:
    return NativeLlamaBackend(folder, folder.name, CPU, torch.float32, adapter)


def test_logits_match_transformers_through_the_kv_cache(tiny_settings, tiny_model_dir: Path) -> None:
    reference = load_model(tiny_settings).model
    model = load_llama(tiny_model_dir, torch.float32, CPU)
    ids = torch.tensor([[5, 17, 42, 99, 7, 3]])
    cache = model.new_cache(10)
    got = [model(ids[:, :4], cache)] + [model(ids[:, i : i + 1], cache) for i in range(4, 6)]
    with torch.no_grad():
        expected = reference(input_ids=ids).logits[0]  # (T, V)
    for position, logits in zip([3, 4, 5], got, strict=True):
        torch.testing.assert_close(logits, expected[position], atol=1e-5, rtol=1e-4)


def test_chat_template_renders_like_transformers(tiny_settings, tiny_model_dir: Path) -> None:
    assert native(tiny_model_dir).encode(MESSAGES) == TransformersBackend(load_model(tiny_settings)).encode(MESSAGES)


@pytest.mark.parametrize("penalty", [1.0, 1.3])
def test_greedy_answers_match_the_transformers_backend(tiny_settings, tiny_model_dir: Path, penalty: float) -> None:
    params = GenerationParams(max_new_tokens=20, repetition_penalty=penalty)
    ours, theirs = GenerationResult(), GenerationResult()
    text = "".join(native(tiny_model_dir).stream(MESSAGES, params, ours))
    expected = "".join(TransformersBackend(load_model(tiny_settings)).stream(MESSAGES, params, theirs))
    assert text == expected
    assert (ours.new_tokens, ours.finish_reason) == (theirs.new_tokens, theirs.finish_reason)


@pytest.mark.parametrize("rslora", [False, True])
def test_lora_adapter_is_merged_like_peft(tmp_path: Path, tiny_model_dir: Path, rslora: bool) -> None:
    expected = make_adapter(
        tiny_model_dir, tmp_path / "round", use_rslora=rslora, target_modules=["q_proj", "down_proj"]
    )
    backend = native(tiny_model_dir, tmp_path / "round")
    assert backend.adapter == "round"
    logits = backend.model(torch.tensor([[5, 6, 7, 8]]), backend.model.new_cache(4))
    torch.testing.assert_close(logits, expected[0, -1], atol=1e-5, rtol=1e-4)


def test_adapter_for_another_shape_is_refused(tmp_path: Path, tiny_model_dir: Path) -> None:
    make_adapter(build_tiny_model(tmp_path / "wide", hidden_size=32), tmp_path / "wide-adapter")
    with pytest.raises(DomainbotError, match="does not fit"):
        native(tiny_model_dir, tmp_path / "wide-adapter")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({}, None),
        ({"model_type": "mistral"}, "not 'llama'"),
        ({"rope_parameters": {"rope_type": "llama3", "rope_theta": 5e5}}, "llama3"),
        ({"attention_bias": True}, "attention_bias"),
        ({"hidden_act": "gelu"}, "silu"),
    ],
)
def test_unsupported_architectures_are_named(tiny_model_dir: Path, change: dict, reason: str | None) -> None:
    found = unsupported_reason({**read_config(tiny_model_dir), **change})
    assert found == reason if reason is None else reason in str(found)


def test_auto_picks_native_on_cpu_and_transformers_when_asked(tiny_settings) -> None:
    assert open_backend(tiny_settings).backend.name == "native"
    assert open_backend(tiny_settings.model_copy(update={"backend": "transformers"})).backend.name == "transformers"


def test_adapters_native_cannot_merge_fall_back_to_peft(tmp_path: Path, tiny_settings, tiny_model_dir: Path) -> None:
    make_adapter(tiny_model_dir, tmp_path / "dora", use_dora=True)
    assert "use_dora" in str(adapter_unsupported_reason(tmp_path / "dora"))
    opened = open_backend(tiny_settings.model_copy(update={"adapter": tmp_path / "dora"}))
    assert (opened.backend.name, opened.backend.adapter) == ("transformers", "dora")
    with pytest.raises(DomainbotError, match="native backend cannot run"):
        open_backend(tiny_settings.model_copy(update={"adapter": tmp_path / "dora", "backend": "native"}))


def test_missing_chat_template_is_explained(tmp_path: Path) -> None:
    with pytest.raises(DomainbotError, match="has no chat template"):
        native(build_tiny_model(tmp_path / "plain", chat_template=None))
