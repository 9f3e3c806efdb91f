"""torchrun on the CPU: two gloo processes train what one process with twice the accumulation trains."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

COMMON = ["--format", "chat", "--max-steps", "3", "--micro-batch-size", "1", "--no-packing", "--precision", "fp32"]
COMMON += ["--lr", "1e-2", "--max-seq-len", "96", "--seed", "3"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run(command: list[str], data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DOMAINBOT_DATA_DIR": str(data_dir),
        "GLOO_SOCKET_IFNAME": "lo",
        "OMP_NUM_THREADS": "1",
        "MASTER_ADDR": "127.0.0.1",
    }
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_two_processes_match_one_with_accumulation(tiny_model: Path, chat_data: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    train = ["-m", "bot.cli", "train", "sft", "--data", str(chat_data), "--model", str(tiny_model), *COMMON]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2"]
    launcher += ["--master_addr=127.0.0.1", f"--master_port={free_port()}"]
    ddp = run([*launcher, *train, "--name", "ddp", "--grad-accum", "1"], data_dir)
    assert "Adapter ddp" in ddp.stdout and ddp.stdout.count("Adapter ddp") == 1  # only rank 0 reports
    run([sys.executable, *train, "--name", "single", "--grad-accum", "2"], data_dir)

    adapters = data_dir / "adapters"
    ddp_card = json.loads((adapters / "ddp" / "card.json").read_text(encoding="utf-8"))
    single_card = json.loads((adapters / "single" / "card.json").read_text(encoding="utf-8"))
    assert ddp_card["metrics"]["processes"] == 2 and single_card["metrics"]["processes"] == 1
    ddp_config = json.loads((adapters / "ddp" / "adapter_config.json").read_text(encoding="utf-8"))
    single_config = json.loads((adapters / "single" / "adapter_config.json").read_text(encoding="utf-8"))
    # peft writes target_modules from a set: their order differs between processes, their content may not.
    assert sorted(ddp_config.pop("target_modules")) == sorted(single_config.pop("target_modules"))
    assert ddp_config == single_config
    ddp_weights = load_file(adapters / "ddp" / "adapter_model.safetensors")
    single_weights = load_file(adapters / "single" / "adapter_model.safetensors")
    assert ddp_weights.keys() == single_weights.keys()
    assert any(w.abs().sum() > 0 for k, w in ddp_weights.items() if "lora_B" in k)  # it did train
    for key, weight in single_weights.items():
        torch.testing.assert_close(ddp_weights[key], weight, atol=1e-5, rtol=1e-4)
