"""Processes under ``torchrun``: which one this is, and the few collectives the baseline needs.

Without torchrun (no ``WORLD_SIZE`` in the environment) everything here is a no-op for one process.
"""
from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_type: str) -> Dist:
    """Join the process group torchrun describes (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=dt.timedelta(minutes=30))
    return Dist(rank=rank, local_rank=local, world_size=world)


def shutdown(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()


def all_sum(d: Dist, values: list[float], device: torch.device) -> list[float]:
    """Element-wise sum over processes (float64)."""
    if not d.enabled:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def all_concat(d: Dist, array):
    """Concatenate each process's numpy array in rank order (the shards are contiguous)."""
    if not d.enabled:
        return array
    import numpy as np

    parts: list = [None] * d.world_size
    dist.all_gather_object(parts, array)
    return np.concatenate(parts)
