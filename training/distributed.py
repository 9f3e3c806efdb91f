"""One process or many: torchrun sets RANK / WORLD_SIZE / LOCAL_RANK, and each process trains a share."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from bot.errors import DomainbotError
from bot.model.device import select_device


@dataclass(frozen=True)
class Processes:
    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        """Only the main process writes files and prints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def sum(self, value: float) -> float:
        """The sum of `value` over all processes."""
        if not self.distributed:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return float(tensor.item())

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def start(device_preference: str) -> Processes:
    """Join the process group when launched by torchrun (gloo on the CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = select_device(device_preference)
    if world == 1:
        return Processes(0, 1, device)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise DomainbotError(
                f"torchrun started {world} processes but this machine has {torch.cuda.device_count()} GPU(s): "
                "lower --nproc_per_node."
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    elif device.type == "mps":
        raise DomainbotError("Multi-process training is not available on Apple MPS; run one process.")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Processes(rank, world, device)


def stop(processes: Processes) -> None:
    if processes.distributed and dist.is_initialized():
        dist.destroy_process_group()
