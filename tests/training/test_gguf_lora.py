"""peft LoRA -> GGUF LoRA on a tiny Llama: llama.cpp's tensor names and shapes, the q/k row permutation (checked
against transformers' GGUF loader, which undoes it), the scale, the cache beside the adapter, and refusals."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from bot.errors import AdapterError
from tests.helpers import make_adapter
from training.gguf_lora import GGUF_ADAPTER_FILE, gguf_adapter, permute_rows

ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LLAMA_NAMES = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def write_base_gguf(model_dir: Path, out: Path, layers: int | None = None) -> Path:
    """A GGUF with the tiny model's attention layout and its linear weights' shapes (zeros; nothing reads them)."""
    import gguf

    config = json.loads((model_dir / "config.json").read_text())
    layers = config["num_hidden_layers"] if layers is None else layers
    hidden, inner = config["hidden_size"], config["intermediate_size"]
    kv = hidden // config["num_attention_heads"] * config["num_key_value_heads"]
    shapes = {  # (out, in), as torch holds them
        "attn_q": (hidden, hidden),
        "attn_k": (kv, hidden),
        "attn_v": (kv, hidden),
        "attn_output": (hidden, hidden),
        "ffn_gate": (inner, hidden),
        "ffn_up": (inner, hidden),
        "ffn_down": (hidden, inner),
    }
    writer = gguf.GGUFWriter(out, "llama")
    writer.add_block_count(layers)
    writer.add_head_count(config["num_attention_heads"])
    writer.add_head_count_kv(config["num_key_value_heads"])
    writer.add_embedding_length(hidden)
    for layer in range(layers):
        for name, shape in shapes.items():
            writer.add_tensor(f"blk.{layer}.{name}.weight", np.zeros(shape, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


@pytest.fixture(scope="module")
def base_gguf(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_base_gguf(tiny_model_dir, tmp_path_factory.mktemp("base") / "tiny.gguf")


def read_adapter(path: Path) -> tuple[dict[str, object], dict[str, np.ndarray], dict[str, list[int]]]:
    """Fields, tensors (numpy order) and the GGUF dimension lists (innermost first) of a GGUF file."""
    from gguf import GGUFReader

    reader = GGUFReader(path)
    fields = {name: field.contents() for name, field in reader.fields.items()}
    tensors = {t.name: np.array(t.data) for t in reader.tensors}
    shapes = {t.name: [int(d) for d in t.shape] for t in reader.tensors}
    return fields, tensors, shapes


@pytest.mark.parametrize(("n_head", "n_head_kv"), [(4, 4), (4, 2), (9, 3)])
def test_permutation_is_what_transformers_gguf_loader_undoes(n_head: int, n_head_kv: int) -> None:
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    head_dim, rank = 8, 3
    undo = LlamaTensorProcessor(config={})._reverse_permute_weights
    rng = np.random.default_rng(0)
    for rows, heads, kv_argument in [(n_head * head_dim, n_head, n_head), (n_head_kv * head_dim, n_head_kv, n_head_kv)]:
        b = rng.standard_normal((rows, rank)).astype(np.float32)  # a lora_B: rows are output dimensions
        permuted = permute_rows(b, heads)
        assert not np.array_equal(permuted, b)
        # transformers un-permutes q with (n_head, n_head) and k with (n_head, n_head_kv)
        np.testing.assert_array_equal(undo(permuted, n_head, kv_argument if heads == n_head_kv else n_head), b)


def test_permutation_interleaves_the_halves_of_each_head() -> None:
    rows = np.arange(8, dtype=np.float32)[:, None]  # 2 heads of 4 rows: halves (0,1)(2,3) and (4,5)(6,7)
    assert permute_rows(rows, 2)[:, 0].tolist() == [0, 2, 1, 3, 4, 6, 5, 7]


def test_converted_adapter_has_llamacpp_names_shapes_alpha_and_permuted_b(
    tiny_model_dir: Path, base_gguf: Path, tmp_path: Path
) -> None:
    adapter = tmp_path / "adapter"
    make_adapter(tiny_model_dir, adapter, r=4, lora_alpha=8, target_modules=ALL_LINEAR)
    path = gguf_adapter(adapter, base_gguf)
    assert path == adapter / GGUF_ADAPTER_FILE
    fields, tensors, shapes = read_adapter(path)
    assert fields["general.type"] == "adapter"
    assert fields["general.architecture"] == "llama"
    assert fields["adapter.type"] == "lora"
    assert fields["adapter.lora.alpha"] == pytest.approx(8.0)

    peft = {key: value.numpy() for key, value in load_file(adapter / "adapter_model.safetensors").items()}
    expected = {
        f"blk.{layer}.{gguf}.weight.lora_{side}" for layer in (0, 1) for gguf in LLAMA_NAMES.values() for side in "ab"
    }
    assert set(tensors) == expected
    for layer in (0, 1):
        for hf, gguf in LLAMA_NAMES.items():
            a = peft[f"base_model.model.model.layers.{layer}.{hf}.lora_A.weight"]  # (r, in)
            b = peft[f"base_model.model.model.layers.{layer}.{hf}.lora_B.weight"]  # (out, r)
            name = f"blk.{layer}.{gguf}.weight"
            # llama.cpp checks lora_a's ne[0] against the weight's input size and lora_b's ne[1] against its output
            assert shapes[f"{name}.lora_a"] == [a.shape[1], a.shape[0]]
            assert shapes[f"{name}.lora_b"] == [b.shape[1], b.shape[0]]
            np.testing.assert_array_equal(tensors[f"{name}.lora_a"], a)
            heads = {"attn_q": 4, "attn_k": 2}.get(gguf)
            np.testing.assert_array_equal(tensors[f"{name}.lora_b"], b if heads is None else permute_rows(b, heads))


def test_rslora_scale_is_carried_by_b(tiny_model_dir: Path, base_gguf: Path, tmp_path: Path) -> None:
    adapter = tmp_path / "adapter"
    make_adapter(tiny_model_dir, adapter, r=4, lora_alpha=8, use_rslora=True, target_modules=["v_proj"])
    _, tensors, _ = read_adapter(gguf_adapter(adapter, base_gguf))
    b = load_file(adapter / "adapter_model.safetensors")[
        "base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight"
    ]
    # peft scales by alpha / sqrt(r), llama.cpp by alpha / r
    np.testing.assert_allclose(tensors["blk.0.attn_v.weight.lora_b"], b.numpy() * math.sqrt(4), rtol=1e-6)


def test_conversion_is_cached_until_the_weights_change(tiny_model_dir: Path, base_gguf: Path, tmp_path: Path) -> None:
    adapter = tmp_path / "adapter"
    make_adapter(tiny_model_dir, adapter, target_modules=["q_proj"])
    path = gguf_adapter(adapter, base_gguf)
    written = path.stat().st_mtime_ns
    assert gguf_adapter(adapter, base_gguf) == path and path.stat().st_mtime_ns == written

    make_adapter(tiny_model_dir, adapter, target_modules=["q_proj"], lora_alpha=32)  # retrained in place
    _, tensors, _ = read_adapter(gguf_adapter(adapter, base_gguf))
    fields, _, _ = read_adapter(path)
    assert fields["adapter.lora.alpha"] == pytest.approx(32.0)
    assert set(tensors) == {
        "blk.0.attn_q.weight.lora_a",
        "blk.0.attn_q.weight.lora_b",
        "blk.1.attn_q.weight.lora_a",
        "blk.1.attn_q.weight.lora_b",
    }

    path.write_bytes(b"GGUF damaged")
    assert read_adapter(gguf_adapter(adapter, base_gguf))[0]["adapter.type"] == "lora"
    assert not [p.name for p in adapter.iterdir() if p.name.endswith(".partial")]


def test_adapter_of_a_wider_model_is_refused(tmp_path: Path, base_gguf: Path) -> None:
    from tests.helpers import build_tiny_model

    wide = build_tiny_model(tmp_path / "wide", hidden_size=32)
    make_adapter(wide, tmp_path / "adapter", target_modules=["q_proj"])
    with pytest.raises(
        AdapterError,
        match=r"made for another base model: .*q_proj is 16×16 in tiny.gguf, the adapter's update is 32×32",
    ) as error:
        gguf_adapter(tmp_path / "adapter", base_gguf)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "adapter" / GGUF_ADAPTER_FILE).exists()


def test_adapter_of_a_deeper_model_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    shallow = write_base_gguf(tiny_model_dir, tmp_path / "shallow.gguf", layers=1)
    make_adapter(tiny_model_dir, tmp_path / "adapter", target_modules=["v_proj"])
    with pytest.raises(AdapterError, match=r"adapts model.layers.1.self_attn.v_proj, which shallow.gguf \(1 layers\)"):
        gguf_adapter(tmp_path / "adapter", shallow)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"use_dora": True}, "use_dora is set"),
        ({"peft_type": "IA3"}, "peft_type 'IA3' is not LORA"),
        ({"modules_to_save": ["lm_head"]}, "modules_to_save is set"),
    ],
)
def test_adapters_a_lora_file_cannot_express_are_refused(
    change: dict[str, object], message: str, tiny_model_dir: Path, base_gguf: Path, tmp_path: Path
) -> None:
    adapter = tmp_path / "adapter"
    make_adapter(tiny_model_dir, adapter, target_modules=["q_proj"])
    config_file = adapter / "adapter_config.json"
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), **change}))
    with pytest.raises(AdapterError, match=message):
        gguf_adapter(adapter, base_gguf)


def test_a_folder_without_adapter_files_is_refused(base_gguf: Path, tmp_path: Path) -> None:
    with pytest.raises(AdapterError, match=r"expected adapter_config.json and adapter_model.safetensors"):
        gguf_adapter(tmp_path, base_gguf)


def test_a_base_that_is_not_gguf_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    make_adapter(tiny_model_dir, tmp_path / "adapter", target_modules=["q_proj"])
    bogus = tmp_path / "model.gguf"
    bogus.write_bytes(b"not a gguf file at all")
    with pytest.raises(AdapterError, match=r"Cannot read the base model .*model.gguf"):
        gguf_adapter(tmp_path / "adapter", bogus)
