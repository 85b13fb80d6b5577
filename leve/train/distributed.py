"""torchrun integration: one process per device, DDP over NCCL (CUDA) or gloo (CPU).

leve has no launcher of its own: ``torchrun --nproc_per_node 4 -m leve.cli train`` (or the
``leve`` script under torchrun) sets RANK, LOCAL_RANK and WORLD_SIZE, which we read here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from leve.device import resolve_device


@dataclass(frozen=True)
class Dist:
    """Where this process sits in the job."""

    rank: int = 0
    local_rank: int = 0
    world: int = 1

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init(device_name: str) -> tuple[Dist, torch.device]:
    """Join the torchrun process group when WORLD_SIZE > 1; returns the layout and the device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    layout = Dist(rank, local_rank, world)
    device = resolve_device(device_name, "train.device")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if layout.enabled and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return layout, device


def barrier(layout: Dist) -> None:
    if layout.enabled:
        dist.barrier()


def mean_across(values: torch.Tensor, layout: Dist) -> torch.Tensor:
    """Average a tensor over processes (a no-op in a single process)."""
    if layout.enabled:
        values = values.clone()
        dist.all_reduce(values)
        values /= layout.world
    return values


def shutdown(layout: Dist) -> None:
    if layout.enabled and dist.is_initialized():
        dist.destroy_process_group()
