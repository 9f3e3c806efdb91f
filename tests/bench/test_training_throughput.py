"""The training throughput benchmark's measurements run end to end on a tiny model (so the script cannot rot)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bench.training_throughput import (
    BenchConfig,
    build_tinyllama,
    compare,
    encode_all,
    load_conversations,
    main,
    rows_for,
    split_examples,
)
from tests.helpers import build_tiny_model
from training.arguments import LoraArguments
from training.encoding import IGNORE_INDEX

TASKS = [
    {"instruction": "Name the capital of France.", "instances": [{"input": "", "output": "Paris."}]},
    {
        "instruction": "Add the numbers.",
        "instances": [{"input": "2 and 40", "output": "42"}, {"input": "3.14 and 1", "output": "4.14"}],
    },
    {
        "instruction": "Say hello in Korean.",
        "instances": [{"input": "", "output": "안녕하세요. 서울은 한국의 수도입니다."}],
    },
    {"instruction": "What does domainbot do?", "instances": [{"input": "", "output": "It answers questions."}]},
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", hidden_size=32)


@pytest.fixture
def seed_tasks(tmp_path: Path) -> Path:
    path = tmp_path / "seed_tasks.jsonl"
    path.write_text("".join(json.dumps(task, ensure_ascii=False) + "\n" for task in TASKS), encoding="utf-8")
    return path


def test_seed_tasks_become_one_turn_conversations(seed_tasks: Path) -> None:
    conversations = load_conversations(seed_tasks)
    assert len(conversations) == 5
    assert [m.role for m in conversations[1]] == ["user", "assistant"]
    assert conversations[1][0].content == "Add the numbers.\n\n2 and 40" and conversations[1][1].content == "42"
    assert conversations[0][0].content == "Name the capital of France."  # no input: the instruction alone


def test_both_sides_measure_the_same_real_tokens(tiny: Path, seed_tasks: Path, tmp_path: Path) -> None:
    examples = encode_all(tiny, load_conversations(seed_tasks), max_len=128)
    warmup, timed = split_examples(examples, warmup=2, timed=4, seed=0)
    assert len(warmup) == 2 and len(timed) == 4  # five examples: the sample repeats the data to fill both
    config = BenchConfig(
        batch_size=2,
        rows=rows_for(timed, batch_size=2, max_len=128),
        max_seq_len=128,
        precision="fp32",
        lora=LoraArguments(rank=2, alpha=4),
    )
    stock, ours = compare(tiny, warmup, timed, config, torch.device("cpu"), rounds=1, work_dir=tmp_path)

    tokens = sum(len(example) for example in timed)
    for measured in (*stock, *ours):
        assert measured.real_tokens == tokens
        assert measured.seconds > 0 and measured.tokens_per_second > 0
        assert measured.computed_tokens >= measured.real_tokens
    assert stock[0].steps == 2 and stock[0].examples == 4
    assert ours[0].examples == 4


def test_tinyllama_shape_folds_ids_into_its_vocabulary(tiny: Path, seed_tasks: Path, tmp_path: Path) -> None:
    shape = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 64,
        "max_position_embeddings": 256,
    }
    folder = build_tinyllama(tiny, tmp_path / "shaped", torch.device("cpu"), shape)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    assert config["vocab_size"] == 64 and config["num_key_value_heads"] == 2
    assert (folder / "tokenizer.json").exists()

    examples = encode_all(folder, load_conversations(seed_tasks), max_len=128, vocab_size=64)
    assert all(0 <= i < 64 for e in examples for i in e.input_ids)
    assert all(label == IGNORE_INDEX or 0 <= label < 64 for e in examples for label in e.labels)
    assert any(label != IGNORE_INDEX for e in examples for label in e.labels)


def test_the_script_prints_both_figures_and_their_ratio(
    tiny: Path, seed_tasks: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["--model", str(tiny), "--data", str(seed_tasks), "--precision", "fp32", "--steps", "2", "--batch-size", "2",
          "--max-seq-len", "128", "--rounds", "1", "--rank", "2", "--alpha", "4"])  # fmt: skip
    lines = capsys.readouterr().out.strip().splitlines()
    figures = json.loads(lines[-1])
    assert figures["stock_tok_s"][0] > 0 and figures["ours_tok_s"][0] > 0 and figures["ratio"] > 0
    assert len(figures["real_tokens"]) == 1 and figures["real_tokens"][0] > 0  # both sides, the same count
    assert 0 <= figures["stock_padding_share"] < 1
    assert any(line.startswith("ratio") for line in lines)
    assert any(line.startswith("same real tokens on both sides: True") for line in lines)
