"""torchrun / DDP setup: gloo on CPU, NCCL on GPU; a single process needs none of it."""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints, logs and the progress bar."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """Whether a process group is running (more than one process)."""
        return self.world_size > 1


def setup(device: str = "auto") -> DistInfo:
    """Join the torchrun process group when launched by torchrun; pick the device.

    `device`: auto (cuda:LOCAL_RANK when CUDA is available, else cpu) | cpu | cuda. ValueError (one line)
    for another name, or cuda on a machine without a CUDA device for this process.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda (torchrun gives each process cuda:LOCAL_RANK), got {device!r}")
    if device == "cuda" and torch.cuda.device_count() <= local:
        raise ValueError(f"device=cuda but this process (LOCAL_RANK {local}) has no CUDA device "
                         f"({torch.cuda.device_count()} visible); use device=cpu or auto")
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda:
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=30))
    return DistInfo(rank=rank, world_size=world, local_rank=local, device=dev)


def cleanup() -> None:
    """Leave the process group (no-op for one process)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(x: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum a tensor over processes (identity for one process)."""
    if info.enabled:
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x


def barrier(info: DistInfo) -> None:
    """Wait for every process (no-op for one process)."""
    if info.enabled:
        dist.barrier()


def check_on_main(check: Callable[[], None], info: DistInfo) -> None:
    """Run `check` on rank 0 (the rank that writes) and make every rank refuse when it refuses.

    A ValueError from `check` is re-raised on rank 0; the other ranks raise a ValueError saying rank 0
    refused, instead of waiting for it at the next barrier. One process: just `check()`.
    """
    if not info.enabled:
        check()
        return
    err: ValueError | None = None
    if info.is_main:
        try:
            check()
        except ValueError as e:
            err = e
    flag = torch.tensor([1.0 if err is not None else 0.0], device=info.device)
    dist.all_reduce(flag, op=dist.ReduceOp.SUM)
    if err is not None:
        raise err
    if flag.item() > 0:
        raise ValueError("rank 0 refused to start (its message says why)")
