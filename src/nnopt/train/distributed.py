"""Data-parallel training on torch.distributed: every process takes its shard of each global
batch, gradients are averaged across processes after each backward (weighted by shard size, so
that the update equals one process's on the whole batch), and parameters and buffers start from,
and are kept equal to, process 0's.

This is what DistributedDataParallel's reducer does, done as one all-reduce of all gradients
after ``backward()`` rather than overlapped with it: tasks that take extra gradients (PGD's
input gradients, co-teaching's second network) then work unchanged, and on CPU (gloo) there is no
overlap to lose. Batch-norm statistics are each process's own during a step (as with DDP without
SyncBatchNorm); process 0's running statistics are broadcast at every epoch's end, before
validation, so that every process takes the same checkpoint and early-stopping decisions.

Batch size is global: ``batch_size: 128`` with 2 processes is 64 per process, and the learning
rate means what it means in one process.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator, Sequence

import torch
import torch.distributed as dist
from torch import nn

_LOCAL = {"depth": 0}  # > 0 inside local_only(): process 0 computing alone


def world() -> tuple[int, int]:
    """(rank, world size) of the current process group, (0, 1) outside one or inside
    ``local_only()``."""
    if dist.is_available() and dist.is_initialized() and not _LOCAL["depth"]:
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def rank() -> int:
    """This process's rank (0 outside a process group), even inside ``local_only()``."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


@contextlib.contextmanager
def local_only() -> Iterator[None]:
    """A phase that process 0 runs alone (measurement, the timing pass, the report): a fit()
    inside it trains in this process only, joining no collective."""
    _LOCAL["depth"] += 1
    try:
        yield
    finally:
        _LOCAL["depth"] -= 1


def init_from_env(device: torch.device) -> bool:
    """Join the process group torchrun describes in the environment: NCCL when the run computes
    on a CUDA device (this process's own), gloo on the CPU; False when this process was not
    started by torchrun with several processes."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return False
    if device.type == "cuda":
        torch.cuda.set_device(device)
    # process 0 measures alone between training stages: the others wait in the next collective
    # for as long as that takes (the 30-minute default would fail a long measurement)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                            timeout=datetime.timedelta(days=7))
    return True


def finish(ok: bool) -> None:
    """Leave the process group: after a run that succeeded, every process waits for process 0
    to finish its measurements and the report (a barrier, blocking without using the CPU, so
    that no other process's exit lands in process 0's timing); after a failure, at once
    (torchrun stops the others)."""
    if dist.is_initialized():
        if ok:
            dist.barrier()
        dist.destroy_process_group()


def describe() -> dict[str, object]:
    """World size and backend, for the run's environment record."""
    if dist.is_available() and dist.is_initialized():
        return {"world_size": dist.get_world_size(), "backend": dist.get_backend()}
    return {"world_size": 1, "backend": None}


def shard(idx: torch.Tensor, rank: int, size: int) -> torch.Tensor:
    """This process's contiguous part of a global batch (sizes differ by at most one)."""
    return idx.tensor_split(size)[rank]


def same_model_everywhere(modules: Sequence[nn.Module]) -> bool:
    """Whether every process holds a model of the same shapes (a step that decides by measuring
    latency, such as a budgeted pruning or hardware-aware search, may decide differently in
    each process)."""
    shapes = [tuple(t.shape) for m in modules for t in [*m.parameters(), *m.buffers()]]
    gathered: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, shapes)
    return all(g == shapes for g in gathered)


def broadcast_state(modules: Sequence[nn.Module], buffers_only: bool = False) -> None:
    """Process 0's parameters (unless ``buffers_only``) and buffers, on every process."""
    for m in modules:
        tensors = list(m.buffers()) if buffers_only else [*m.parameters(), *m.buffers()]
        for t in tensors:
            dist.broadcast(t.data, src=0)


def average_gradients(params: Sequence[nn.Parameter], local: int, total: int,
                      loss: torch.Tensor) -> float:
    """Every process's gradients replaced by the batch-size-weighted mean over processes, in one
    all-reduce that also carries the loss; returns the global batch's mean loss, the same on
    every process (so every process takes the same decision on a bad loss). Parameters without
    a gradient stay without one (the same on every process: same model, same code path)."""
    have = [p for p in params if p.grad is not None]
    flat = torch.cat([*(p.grad.reshape(-1) for p in have), loss.detach().reshape(1).float()])
    flat = flat * (local / total)
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for p in have:
        n = p.grad.numel()
        p.grad.copy_(flat[offset:offset + n].view_as(p.grad))
        offset += n
    return float(flat[-1])


def sum_all(*values: float) -> list[float]:
    """Each value summed over the processes."""
    nccl = dist.get_backend() == "nccl"  # NCCL reduces CUDA tensors only
    t = torch.tensor(values, dtype=torch.float64,
                     device=torch.device("cuda", torch.cuda.current_device()) if nccl else None)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()
