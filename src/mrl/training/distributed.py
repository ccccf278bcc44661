"""Process-group set-up for `torchrun`, device choice, and the few collectives training needs.

Launch: `torchrun --nproc_per_node=N $(which mrl) train --config ...` sets RANK, WORLD_SIZE
and LOCAL_RANK; a plain `python` run is a world of one and needs no process group.
Backend: NCCL when the processes use CUDA, gloo on the CPU.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

from mrl.errors import ConfigError, MrlError

T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: its rank among `world_size` and the device it trains on."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes files and logs."""
        return self.rank == 0

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum `tensor` over all processes, in place (a no-op for one process)."""
        if self.world_size > 1:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def mean(self, tensor: torch.Tensor) -> torch.Tensor:
        """The mean of `tensor` over all processes (a copy; the input is left as is)."""
        return self.sum_(tensor.clone()) / self.world_size


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """'auto' -> this process's CUDA device when there is one, else the CPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                "device 'cuda' was requested but CUDA is not available; use device=cpu"
            )
        return torch.device("cuda", local_rank)
    return torch.device(device)


def setup_distributed(device: str) -> tuple[DistContext, bool]:
    """Join the process group `torchrun` describes (if any) and pick this process's device.

    Returns:
        (context, created): `created` is True when this call initialised the process
        group, so the caller should destroy it when done.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    torch_device = resolve_device(device, local_rank)
    created = False
    if world_size > 1 and not dist.is_initialized():
        if torch_device.type == "cuda":
            torch.cuda.set_device(torch_device)
        dist.init_process_group("nccl" if torch_device.type == "cuda" else "gloo")
        created = True
    return DistContext(rank, world_size, local_rank, torch_device), created


def on_main(ctx: DistContext, fn: Callable[[], T]) -> T | None:
    """Run `fn` on rank 0 only; whatever it raises stops every rank, not only rank 0.

    The other ranks wait for rank 0's outcome in one broadcast: a refusal there (a locked
    or unusable run folder) raises the same `MrlError` on every rank, instead of leaving
    them blocked in the next collective. Returns `fn()` on rank 0, None elsewhere.
    """
    result, error = None, None
    if ctx.is_main:
        try:
            result = fn()
        except Exception as e:
            error = e
    if ctx.world_size > 1:
        sent = [error if error is None or isinstance(error, MrlError) else _failed(error)]
        dist.broadcast_object_list(sent, src=0)
        if not ctx.is_main:
            error = sent[0]
    if error is not None:
        raise error
    return result


def _failed(error: Exception) -> RuntimeError:
    """What the other ranks raise for an unexpected (maybe unpicklable) error on rank 0."""
    return RuntimeError(f"rank 0 failed: {type(error).__name__}: {error}")
