"""LoRA rounds on a tiny Llama: SFT learns its data, resume continues exactly, preference rounds move the margin."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from bot.errors import DomainbotError
from tests.training.conftest import QA, write_jsonl
from training.arguments import LoraArguments, PreferenceArguments, SFTArguments
from training.loop import checkpoint_dirs
from training.preference import train_dpo, train_kto
from training.rounds import BaseModel
from training.sft import train_sft


def sft_args(data: Path, **overrides: object) -> SFTArguments:
    values: dict[str, object] = {
        "data": data,
        "format": "chat",
        "max_steps": 6,
        "learning_rate": 1e-2,
        "micro_batch_size": 2,
        "max_seq_len": 96,
        "precision": "fp32",
        "packing": False,
    }
    return SFTArguments.model_validate({**values, **overrides})


def adapter_weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "adapter_model.safetensors")


def test_sft_round_learns_and_writes_a_peft_adapter(tiny_model: Path, chat_data: Path, tmp_path: Path) -> None:
    result = train_sft(sft_args(chat_data, max_steps=25), BaseModel(tiny_model, "tiny"), tmp_path / "run", "cpu")
    # The tiny model's frozen output head caps its logits, so the loss cannot fall far; it must fall.
    assert result.metrics["final_loss"] < 0.95 * result.metrics["first_loss"]
    assert result.metrics["real_tokens"] > 0 and result.data["rows"] == len(QA)
    config = (result.adapter_dir / "adapter_config.json").read_text(encoding="utf-8")
    assert '"base_model_name_or_path": "tiny"' in config  # a name, never a local path
    assert result.arguments["data"] == chat_data.name
    weights = adapter_weights(result.adapter_dir)
    assert any(key.endswith("q_proj.lora_A.weight") for key in weights)
    assert any(key.endswith("down_proj.lora_B.weight") for key in weights)
    for name in ("loss.png", "loss.jsonl", "run.json"):
        assert (result.run_dir / name).stat().st_size > 0
    assert (result.run_dir / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_continues_exactly_where_the_checkpoint_left(tiny_model: Path, chat_data: Path, tmp_path: Path) -> None:
    base = BaseModel(tiny_model, "tiny")
    args = sft_args(chat_data, save_every=3)
    straight = train_sft(args, base, tmp_path / "straight", "cpu")
    # An interrupted run: only the step-3 checkpoint survived.
    shutil.copytree(tmp_path / "straight", tmp_path / "resumed", ignore=shutil.ignore_patterns("adapter"))
    shutil.rmtree(checkpoint_dirs(tmp_path / "resumed")[-1])
    assert [p.name for p in checkpoint_dirs(tmp_path / "resumed")] == ["step-000003"]
    resumed = train_sft(args, base, tmp_path / "resumed", "cpu", resume=True)
    assert resumed.metrics["resumed_from_step"] == 3
    expected, got = adapter_weights(straight.adapter_dir), adapter_weights(resumed.adapter_dir)
    assert expected.keys() == got.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], atol=1e-6, rtol=1e-5)
    lines = (tmp_path / "resumed" / "loss.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 6


def test_resume_from_another_models_checkpoint_is_refused(
    tiny_model: Path, other_tiny_model: Path, chat_data: Path, tmp_path: Path
) -> None:
    train_sft(sft_args(chat_data, max_steps=2), BaseModel(tiny_model, "tiny"), tmp_path / "run", "cpu")
    before = sorted(p.name for p in (tmp_path / "run").rglob("*"))
    with pytest.raises(DomainbotError, match="made on model 'tiny'"):
        train_sft(sft_args(chat_data), BaseModel(other_tiny_model, "other"), tmp_path / "run", "cpu", resume=True)
    assert sorted(p.name for p in (tmp_path / "run").rglob("*")) == before


def test_a_target_module_the_model_lacks_is_named(tiny_model: Path, chat_data: Path, tmp_path: Path) -> None:
    args = sft_args(chat_data, lora=LoraArguments(target_modules=["q_proj", "qkv_proj"]))
    with pytest.raises(DomainbotError, match=r"qkv_proj do not exist.*q_proj"):
        train_sft(args, BaseModel(tiny_model, "tiny"), tmp_path / "run", "cpu")
    assert not (tmp_path / "run").exists()


def test_packing_trains_the_same_tokens_in_fewer_rows(tiny_model: Path, chat_data: Path, tmp_path: Path) -> None:
    base = BaseModel(tiny_model, "tiny")
    packed = train_sft(sft_args(chat_data, packing=True, max_steps=1), base, tmp_path / "packed", "cpu")
    plain = train_sft(sft_args(chat_data, max_steps=1), base, tmp_path / "plain", "cpu")
    assert packed.data["trained_tokens"] == plain.data["trained_tokens"]
    assert packed.data["packed_rows"] < plain.data["packed_rows"] == len(QA)


REFUSAL = "I do not know."


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_dpo_round_prefers_the_chosen_answers(tiny_model: Path, tmp_path: Path) -> None:
    data = write_jsonl(
        tmp_path / "dpo.jsonl",
        [{"prompt": user(q), "chosen": a, "rejected": REFUSAL} for q, a in QA],
    )
    args = PreferenceArguments(data=data, max_steps=15, learning_rate=1e-2, micro_batch_size=4, precision="fp32")
    result = train_dpo(args, BaseModel(tiny_model, "tiny"), tmp_path / "run", "cpu")
    assert result.metrics["first_loss"] == pytest.approx(0.6931, abs=1e-3)  # log 2: the adapter starts as a no-op
    assert result.metrics["final_loss"] < 0.5


def test_kto_round_needs_both_kinds_and_learns_from_them(tiny_model: Path, tmp_path: Path) -> None:
    good = [{"prompt": user(q), "completion": a, "desirable": True} for q, a in QA]
    bad = [{"prompt": user(q), "completion": REFUSAL, "desirable": False} for q, _ in QA]
    only_good = write_jsonl(tmp_path / "good.jsonl", good)
    base = BaseModel(tiny_model, "tiny")
    with pytest.raises(DomainbotError, match="KTO needs both kinds"):
        train_kto(PreferenceArguments(data=only_good), base, tmp_path / "none", "cpu")
    both = write_jsonl(tmp_path / "kto.jsonl", good + bad)
    args = PreferenceArguments(data=both, max_steps=15, learning_rate=1e-2, micro_batch_size=4, precision="fp32")
    result = train_kto(args, base, tmp_path / "run", "cpu")
    assert result.metrics["first_loss"] == pytest.approx(0.5, abs=1e-3)  # sigmoid(0) before any update
    assert result.metrics["final_loss"] < 0.45


def test_preference_rounds_refuse_packing(tmp_path: Path) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="packing is not supported"):
        PreferenceArguments(data=tmp_path / "x.jsonl", packing=True)


def test_running_out_of_memory_is_one_message_with_what_helps(
    tiny_model: Path, chat_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from training.sft import SFTObjective

    def exhausted(*_: object) -> torch.Tensor:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(SFTObjective, "loss", exhausted)
    with pytest.raises(DomainbotError, match=r"Out of memory at step 1 .*--micro-batch-size"):
        train_sft(sft_args(chat_data), BaseModel(tiny_model, "tiny"), tmp_path / "run", "cpu")
    assert not (tmp_path / "run" / "adapter").exists()
