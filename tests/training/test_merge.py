"""Merging a LoRA adapter: the merged folder computes what base + adapter compute, in both backends."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bot.errors import DomainbotError
from tests.helpers import build_tiny_model, make_adapter
from training.merge import merge_adapter

INPUT = torch.tensor([[5, 6, 7, 8]])
ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def build_tied_model(folder: Path) -> Path:
    """The tiny Llama with its output embedding tied to the input embedding, as SmolLM2 has it."""
    from transformers import AutoModelForCausalLM

    build_tiny_model(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    model.config.tie_word_embeddings = True
    model.lm_head.weight = model.model.embed_tokens.weight
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def untied_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("merge") / "untied-base")


@pytest.fixture(scope="module")
def tied_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tied_model(tmp_path_factory.mktemp("merge") / "tied-base")


def transformers_logits(folder: Path) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    with torch.no_grad():
        return model(input_ids=INPUT).logits


def native_last_logits(folder: Path) -> torch.Tensor:
    from bot.model.llama import load_llama

    model = load_llama(folder, torch.float32, torch.device("cpu"))
    with torch.no_grad():
        return model(INPUT, model.new_cache(8))


def weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


CASES = {
    "attention-untied": ("untied_base", ["q_proj", "v_proj"]),
    "all-linear-tied": ("tied_base", ALL_LINEAR),
    "lm-head-tied": ("tied_base", ["q_proj", "lm_head"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_merged_folder_computes_base_plus_adapter(
    case: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    base_fixture, targets = CASES[case]
    base: Path = request.getfixturevalue(base_fixture)
    adapted = make_adapter(base, tmp_path / "adapter", target_modules=targets)
    base_logits = transformers_logits(base)
    assert not torch.allclose(adapted, base_logits, atol=1e-4)  # the adapter changes the answer

    out = merge_adapter(base, tmp_path / "adapter", tmp_path / "merged")

    torch.testing.assert_close(transformers_logits(out), adapted, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(native_last_logits(out), adapted[0, -1], atol=1e-5, rtol=1e-4)


def test_tied_embeddings_stay_tied_when_the_adapter_leaves_them_alone(tied_base: Path, tmp_path: Path) -> None:
    make_adapter(tied_base, tmp_path / "adapter", target_modules=ALL_LINEAR)
    out = merge_adapter(tied_base, tmp_path / "adapter", tmp_path / "merged")

    assert json.loads((out / "config.json").read_text())["tie_word_embeddings"] is True
    assert "lm_head.weight" not in weights(out)


def test_adapting_the_tied_output_leaves_the_input_embedding_unchanged(tied_base: Path, tmp_path: Path) -> None:
    make_adapter(tied_base, tmp_path / "adapter", target_modules=["lm_head"])
    out = merge_adapter(tied_base, tmp_path / "adapter", tmp_path / "merged")

    merged, base = weights(out), weights(tied_base)
    assert json.loads((out / "config.json").read_text())["tie_word_embeddings"] is False
    torch.testing.assert_close(merged["model.embed_tokens.weight"], base["model.embed_tokens.weight"])
    assert not torch.allclose(merged["lm_head.weight"], base["model.embed_tokens.weight"])


def test_merged_folder_carries_tokenizer_template_and_card(untied_base: Path, tmp_path: Path) -> None:
    make_adapter(untied_base, tmp_path / "round-2")
    out = merge_adapter(untied_base, tmp_path / "round-2", tmp_path / "merged", base_name="tiny-llama")

    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"):
        assert (out / name).read_bytes() == (untied_base / name).read_bytes(), name
    card = (out / "README.md").read_text()
    assert "tiny-llama" in card and "round-2" in card and "rank 4" in card
    assert str(tmp_path) not in card  # no local paths in a card that may be published
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged", "round-2"]  # no staging folder left


def test_dtype_is_written_as_asked(untied_base: Path, tmp_path: Path) -> None:
    make_adapter(untied_base, tmp_path / "adapter")
    out = merge_adapter(untied_base, tmp_path / "adapter", tmp_path / "merged", dtype="bfloat16")

    assert {tensor.dtype for tensor in weights(out).values()} == {torch.bfloat16}
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"


def test_existing_output_needs_force(untied_base: Path, tmp_path: Path) -> None:
    make_adapter(untied_base, tmp_path / "adapter")
    out = merge_adapter(untied_base, tmp_path / "adapter", tmp_path / "merged")
    (out / "earlier.txt").write_text("from an earlier merge")

    with pytest.raises(DomainbotError, match=r"already exists.*--force"):
        merge_adapter(untied_base, tmp_path / "adapter", out)
    assert (out / "earlier.txt").exists()

    merge_adapter(untied_base, tmp_path / "adapter", out, force=True)
    assert not (out / "earlier.txt").exists() and (out / "model.safetensors").is_file()


def test_force_replaces_only_a_model_folder(untied_base: Path, tmp_path: Path) -> None:
    make_adapter(untied_base, tmp_path / "adapter")
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "keep.txt").write_text("mine")

    with pytest.raises(DomainbotError, match="does not hold a model, so --force will not replace it"):
        merge_adapter(untied_base, tmp_path / "adapter", notes, force=True)
    assert (notes / "keep.txt").read_text() == "mine"


def test_a_failed_write_leaves_nothing_behind(
    untied_base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import PreTrainedModel

    make_adapter(untied_base, tmp_path / "adapter")
    out = merge_adapter(untied_base, tmp_path / "adapter", tmp_path / "out")
    earlier = {p.name: p.read_bytes() for p in out.iterdir()}

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError("No space left on device")

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", disk_full)
    with pytest.raises(OSError, match="No space"):
        merge_adapter(untied_base, tmp_path / "adapter", out, force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter", "out"]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == earlier  # the earlier merge is intact


@pytest.fixture(scope="module")
def wider_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("merge") / "wider-base", hidden_size=32)


def test_adapter_of_another_shape_is_refused(untied_base: Path, wider_base: Path, tmp_path: Path) -> None:
    make_adapter(wider_base, tmp_path / "adapter")
    with pytest.raises(DomainbotError, match="was trained on wider-base, but the base model is untied-base"):
        merge_adapter(untied_base, tmp_path / "adapter", tmp_path / "merged")
    with pytest.raises(DomainbotError, match=r"does not fit untied-base .*takes 16 inputs.*expects 32"):
        merge_adapter(untied_base, tmp_path / "adapter", tmp_path / "merged", allow_other_base=True)
    assert not (tmp_path / "merged").exists()


def test_adapter_for_modules_the_model_lacks_is_refused(untied_base: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    make_adapter(untied_base, tmp_path / "adapter")
    tensors = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    # A deeper model's layer 5: peft would ignore these weights without a word.
    extra = {k.replace("layers.1.", "layers.5."): v.clone() for k, v in tensors.items() if "layers.1." in k}
    save_file({**tensors, **extra}, tmp_path / "adapter" / "adapter_model.safetensors")

    with pytest.raises(DomainbotError, match=r"it adapts model\.layers\.5\.self_attn\.q_proj, which untied-base"):
        merge_adapter(untied_base, tmp_path / "adapter", tmp_path / "merged")


@pytest.mark.parametrize(
    ("remove", "message"),
    [
        ("adapter_config.json", "adapter_config.json missing"),
        ("adapter_model.safetensors", "adapter_model.safetensors missing"),
        ("", "does not exist"),
    ],
)
def test_incomplete_adapter_is_refused(untied_base: Path, tmp_path: Path, remove: str, message: str) -> None:
    adapter = tmp_path / "adapter"
    make_adapter(untied_base, adapter)
    if remove:
        (adapter / remove).unlink()
    else:
        adapter = tmp_path / "no-such-adapter"
    with pytest.raises(DomainbotError, match=message):
        merge_adapter(untied_base, adapter, tmp_path / "merged")


def test_output_inside_the_base_folder_is_refused(untied_base: Path, tmp_path: Path) -> None:
    make_adapter(untied_base, tmp_path / "adapter")
    with pytest.raises(DomainbotError, match="overlaps the base model folder"):
        merge_adapter(untied_base, tmp_path / "adapter", untied_base.parent, force=True)
    assert (untied_base / "model.safetensors").is_file()
