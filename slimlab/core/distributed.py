"""torch.distributed helpers for processes launched by ``torchrun`` or ``accelerate launch``.

slimlab never spawns its own workers for training: the launcher sets RANK / WORLD_SIZE / MASTER_ADDR and
these helpers read them. Tests start 2 CPU processes on the gloo backend the same way.
"""

from __future__ import annotations

import atexit
import os

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    if is_distributed():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    if is_distributed():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return rank() == 0


def init_from_environment(backend: str | None = None) -> bool:
    """Join the process group the launcher described; a no-op when not launched with several processes.

    Returns True when a process group is active afterwards.
    """
    if is_distributed():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend=backend)
    # Leave the group before the interpreter tears down: a gloo group still alive at exit can abort the process
    # ("terminate called without an active exception") after the work has finished, failing the launch.
    atexit.register(leave_process_group)
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return True


def leave_process_group() -> None:
    """Destroy the default process group if one is active (idempotent)."""
    if is_distributed():
        dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """Average a tensor over ranks (returns the tensor unchanged when single-process)."""
    if not is_distributed():
        return value
    value = value.clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / dist.get_world_size()
