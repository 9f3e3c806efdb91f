"""`domainbot train` and `domainbot eval model` on the tiny Llama: what they write, and how they refuse."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bot.feedback import FeedbackStore, InteractionRecord
from tests.helpers import run_cli
from tests.training.conftest import QA, write_jsonl
from training.registry import AdapterRegistry

FAST = ["--max-steps", "3", "--precision", "fp32", "--max-seq-len", "96", "--lr", "1e-2"]


@pytest.fixture
def chat_file(tmp_path: Path) -> Path:
    rows = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]} for q, a in QA]
    return write_jsonl(tmp_path / "chat.jsonl", rows)


def registry_of(settings: Any) -> AdapterRegistry:
    return AdapterRegistry.in_data_dir(settings.data_dir)


def test_train_sft_registers_and_activates(
    capsys: pytest.CaptureFixture[str], tiny_settings: Any, chat_file: Path
) -> None:
    code, out, err = run_cli(capsys, "train", "sft", "--data", str(chat_file), *FAST, "--rank", "4", "--activate")
    assert code == 0, err
    assert "Adapter sft-001: 3 steps" in out and "Active adapter: sft-001" in out
    registry = registry_of(tiny_settings)
    assert registry.active() == "sft-001"
    card = registry.card("sft-001")
    assert card.kind == "sft" and card.data["rows"] == len(QA) and card.arguments["lora"]["rank"] == 4
    assert card.metrics["steps"] == 3 and card.metrics["real_tokens"] > 0
    run = tiny_settings.data_dir / "runs" / "sft-001"
    assert (run / "loss.png").is_file() and len((run / "loss.jsonl").read_text().splitlines()) == 3

    code, out, err = run_cli(capsys, "eval", "model", "--data", str(chat_file), "--max-new-tokens", "4", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["candidate"]["label"] == "sft-001" and result["baseline"]["label"] == "base"
    assert sum(result["comparison"].values()) == len(QA)
    assert Path(result["plot"]).read_bytes()[:4] == b"\x89PNG"
    assert registry.card("sft-001").metrics["eval"]["examples"] == len(QA)


def test_a_preset_is_read_and_flags_override_it(
    capsys: pytest.CaptureFixture[str], tiny_settings: Any, chat_file: Path, tmp_path: Path
) -> None:
    preset = tmp_path / "preset.yaml"
    preset.write_text("max_steps: 2\nlearning_rate: 0.001\nlora:\n  rank: 2\n  alpha: 4\n", encoding="utf-8")
    code, _, err = run_cli(
        capsys, "train", "sft", "--data", str(chat_file), "--preset", str(preset), "--precision", "fp32",
        "--alpha", "8", "--name", "preset-run",
    )  # fmt: skip
    assert code == 0, err
    card = registry_of(tiny_settings).card("preset-run")
    assert card.arguments["max_steps"] == 2
    assert (card.arguments["lora"]["rank"], card.arguments["lora"]["alpha"]) == (2, 8)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--target-modules", "q_proj,wq"], "Target module(s) wq do not exist"),
        (["--rank", "0"], "lora.rank: Input should be greater than or equal to 1"),
        (["--precision", "fp16"], "fp16 training needs a GPU"),
        (["--resume", "sft-404"], "no run named 'sft-404'"),
        (["--format", "koalpaca"], "expected"),
    ],
)
def test_bad_arguments_are_one_line_and_register_nothing(
    capsys: pytest.CaptureFixture[str], tiny_settings: Any, chat_file: Path, extra: list[str], message: str
) -> None:
    code, _, err = run_cli(capsys, "train", "sft", "--data", str(chat_file), *FAST, *extra)
    assert code == 1 and err.count("\n") == 1 and message in err, err
    assert registry_of(tiny_settings).list() == []


def test_a_malformed_line_is_named_and_the_active_adapter_stays(
    capsys: pytest.CaptureFixture[str], tiny_settings: Any, chat_file: Path, tmp_path: Path
) -> None:
    assert run_cli(capsys, "train", "sft", "--data", str(chat_file), *FAST, "--activate")[0] == 0
    broken = tmp_path / "broken.jsonl"
    broken.write_text(chat_file.read_text(encoding="utf-8") + '{"messages": [oops\n', encoding="utf-8")
    code, _, err = run_cli(capsys, "train", "sft", "--data", str(broken), *FAST, "--activate")
    assert code == 1 and f"broken.jsonl:{len(QA) + 1}" in err
    registry = registry_of(tiny_settings)
    assert [card.name for card in registry.list()] == ["sft-001"] and registry.active() == "sft-001"


def test_dpo_needs_its_data_and_trains_on_pairs(
    capsys: pytest.CaptureFixture[str], tiny_settings: Any, tmp_path: Path
) -> None:
    code, _, err = run_cli(capsys, "train", "dpo")
    assert code == 1 and "needs --data FILE" in err
    pairs = [{"prompt": [{"role": "user", "content": q}], "chosen": a, "rejected": "No idea."} for q, a in QA]
    data = write_jsonl(tmp_path / "dpo.jsonl", pairs)
    code, _, err = run_cli(capsys, "train", "dpo", "--data", str(data), *FAST, "--beta", "0.2")
    assert code == 0, err
    card = registry_of(tiny_settings).card("dpo-001")
    assert card.kind == "dpo" and card.arguments["beta"] == 0.2
    assert card.metrics["first_loss"] == pytest.approx(0.693, abs=1e-3)  # log 2: the new adapter starts as a no-op


def test_a_feedback_round_without_feedback_says_so(capsys: pytest.CaptureFixture[str], tiny_settings: Any) -> None:
    code, _, err = run_cli(capsys, "train", "round")
    assert code == 1 and "There is no feedback yet" in err
    FeedbackStore.in_data_dir(tiny_settings.data_dir).close()
    code, _, err = run_cli(capsys, "train", "round")
    assert code == 1 and "nothing" in err.lower()
    assert registry_of(tiny_settings).list() == []


def test_a_feedback_round_trains_evaluates_and_decides(
    capsys: pytest.CaptureFixture[str], tiny_settings: Any
) -> None:
    store = FeedbackStore.in_data_dir(tiny_settings.data_dir)
    for question, answer in QA:
        interaction = store.log(InteractionRecord(question=question, answer="Wrong.", model="tiny", user_id="1"))
        store.rate(interaction, -1, rater_id="1")
        store.correct(interaction, answer, rater_id="1")
    store.close()
    code, out, err = run_cli(capsys, "train", "round", *FAST, "--max-steps", "20")
    assert code == 0, err
    assert f"Exported {len(QA)} rows" in out and "Adapter round-001: loss on the wanted answers" in out
    registry = registry_of(tiny_settings)
    card = registry.card("round-001")
    assert card.metrics["eval"]["examples"] == len(QA)
    # Activated exactly when the evaluation says it is better: the message and the registry agree.
    activated = "Active adapter: round-001" in out
    assert activated == (registry.active() == "round-001")
    assert activated or "Not activated" in out
