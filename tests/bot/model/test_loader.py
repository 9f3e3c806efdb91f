import shutil
from pathlib import Path

import pytest
import torch

from bot.config import load_settings
from bot.errors import DomainbotError
from bot.model.loader import load_model, resolve_model_folder
from tests.helpers import build_tiny_model, make_adapter


def test_loads_a_local_folder(tiny_settings, tiny_model_dir: Path) -> None:
    loaded = load_model(tiny_settings)
    assert loaded.source == "folder"
    assert loaded.path == tiny_model_dir
    assert loaded.device == torch.device("cpu")
    assert loaded.dtype == torch.float32
    assert next(loaded.model.parameters()).dtype == torch.float32
    assert loaded.tokenizer.chat_template
    assert loaded.timings["load"] > 0


def test_dtype_setting_is_applied(tiny_settings) -> None:
    loaded = load_model(tiny_settings.model_copy(update={"dtype": "bfloat16"}))
    assert next(loaded.model.parameters()).dtype == torch.bfloat16


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("/no/such/model", "not found: expected 'embedded', a local model folder"),
        ("./relative/missing", "not found"),
        ("someorg/not-downloaded", "not in the local Hugging Face cache"),
    ],
)
def test_unknown_models_get_a_clear_error(
    reference: str, message: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(DomainbotError, match=message):
        resolve_model_folder(reference)


def test_hub_id_resolves_from_the_local_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_model_dir: Path
) -> None:
    hub = tmp_path / "hub"
    revision = "0" * 40
    repo = hub / "models--someorg--tiny"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    shutil.copytree(tiny_model_dir, repo / "snapshots" / revision)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(hub))
    assert resolve_model_folder("someorg/tiny") == repo / "snapshots" / revision


def test_folder_without_config(tmp_path: Path) -> None:
    (tmp_path / "empty-model").mkdir()
    with pytest.raises(DomainbotError, match=r"has no config\.json"):
        resolve_model_folder(str(tmp_path / "empty-model"))


def test_model_without_chat_template(tmp_path: Path, tiny_settings) -> None:
    folder = build_tiny_model(tmp_path / "no-template", chat_template=None)
    with pytest.raises(DomainbotError, match="has no chat template"):
        load_model(tiny_settings.model_copy(update={"model": str(folder)}))


def test_unloadable_weights(tmp_path: Path, tiny_model_dir: Path, tiny_settings) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(DomainbotError, match="Could not load the model"):
        load_model(tiny_settings.model_copy(update={"model": str(broken)}))


def test_adapter_is_applied_and_merged(tmp_path: Path, tiny_settings, tiny_model_dir: Path) -> None:
    expected = make_adapter(tiny_model_dir, tmp_path / "round-1")
    base_logits = load_model(tiny_settings).model(input_ids=torch.tensor([[5, 6, 7, 8]])).logits
    loaded = load_model(tiny_settings.model_copy(update={"adapter": tmp_path / "round-1"}))
    assert loaded.adapter == "round-1"
    with torch.no_grad():
        logits = loaded.model(input_ids=torch.tensor([[5, 6, 7, 8]])).logits
    assert torch.allclose(logits, expected, atol=1e-5)
    assert not torch.allclose(logits, base_logits, atol=1e-3)
    assert not hasattr(loaded.model, "peft_config")  # merged: plain model, no LoRA overhead per token


def test_adapter_for_another_model_is_refused(tmp_path: Path, tiny_settings) -> None:
    other = build_tiny_model(tmp_path / "wider", hidden_size=32)
    make_adapter(other, tmp_path / "wider-adapter")
    with pytest.raises(DomainbotError, match="does not fit model"):
        load_model(tiny_settings.model_copy(update={"adapter": tmp_path / "wider-adapter"}))


def test_adapter_folder_must_hold_an_adapter(tmp_path: Path, tiny_settings) -> None:
    with pytest.raises(DomainbotError, match=r"expected adapter_config\.json"):
        load_model(tiny_settings.model_copy(update={"adapter": tmp_path}))


def test_unavailable_device_is_refused(tiny_settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DomainbotError, match="'cuda' was requested"):
        load_model(load_settings().model_copy(update={"device": "cuda", "model": tiny_settings.model}))


def test_a_misfit_adapter_does_not_rebuild_the_model_cache(
    tmp_path: Path, tiny_settings, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cached embedded model that fails to load is rebuilt once; an adapter that does not fit says nothing
    about the cache, and rebuilding it would cost half a minute for the same error."""
    from bot.errors import AdapterError
    from bot.model import loader
    from bot.model.factory import open_backend

    make_adapter(build_tiny_model(tmp_path / "wider", hidden_size=32), tmp_path / "wider-adapter")
    cached = loader.ResolvedModel(tiny_model_dir, "tiny", "cache")
    monkeypatch.setattr(loader, "resolve_model", lambda settings: cached)
    rebuilds: list[str | None] = []
    monkeypatch.setattr(
        loader.embedded, "ensure_embedded_model", lambda models, rebuild_reason=None: rebuilds.append(rebuild_reason)
    )
    for backend in ("native", "transformers"):
        settings = tiny_settings.model_copy(update={"adapter": tmp_path / "wider-adapter", "backend": backend})
        with pytest.raises(AdapterError, match="does not fit model"):
            open_backend(settings)
    assert rebuilds == []
