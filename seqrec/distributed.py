"""torchrun and DistributedDataParallel: joining and leaving the process group, relaunching a command
under torchrun, and what the ranks of one training run share.

Under ``torchrun`` every rank trains on its own shard of the windows or sessions (gloo on CPU, NCCL on
GPU); only rank 0 evaluates, writes checkpoints and logs, and its decisions and data (a checkpoint's state
included) reach the other ranks in memory through :func:`from_main` and :func:`main_computes`, so the
ranks share no file system: on several machines (``torchrun --nnodes=N``) each reads its own copy of the
dataset, and :func:`check_same_on_every_rank` stops them all when the copies differ. Without torchrun
every helper is a no-op for a world of one process.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

T = TypeVar("T")


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of processes (``(0, 1)`` without torchrun)."""
    return (dist.get_rank(), dist.get_world_size()) if is_distributed() else (0, 1)


def init_distributed(device: str) -> bool:
    """Join the process group when launched by torchrun; True on rank 0 (or without torchrun)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return not dist.is_initialized() or dist.get_rank() == 0
    cuda = device in ("auto", "cuda") and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group("nccl" if cuda else "gloo")
    return dist.get_rank() == 0


def leave_process_group(wait: bool = True) -> None:
    """Wait for every rank (rank 0 logs last), then shut the process group down cleanly; ``wait=False``
    (after an error, when some ranks may never reach the barrier) shuts it down at once."""
    if dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


def relaunch(model_name: str, nproc: int, argv: list[str]) -> int:
    """Run the same command under ``torchrun --nproc_per_node=nproc -m seqrec.train``; its exit code."""
    rest, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            rest.append(arg)
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or "torchrun"
    cmd = [torchrun, "--standalone", f"--nproc_per_node={nproc}", "-m", "seqrec.train", "--model", model_name, *rest]
    return subprocess.run(cmd).returncode


def from_main(value: T) -> T:
    """Rank 0's ``value`` on every rank (what the others pass is ignored)."""
    if not is_distributed():
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


class RankZeroFailed(RuntimeError):
    """Rank 0 failed while computing what the other ranks waited for (rank 0 reports the error itself)."""


def main_computes(compute: Callable[[], T]) -> T:
    """``compute()`` run on rank 0 only, its result on every rank (a checkpoint's state, the run to continue).
    An error on rank 0 reaches the other ranks as :class:`RankZeroFailed` instead of leaving them waiting,
    and rank 0 raises its own."""
    if not is_distributed():
        return compute()
    if dist.get_rank() != 0:
        outcome: tuple[bool, Any] = from_main((False, ""))  # what this rank passes is ignored
        if not outcome[0]:
            raise RankZeroFailed(outcome[1])
        return outcome[1]
    try:
        value = compute()
    except Exception as exc:
        from_main((False, f"{type(exc).__name__}: {exc}"))
        raise
    from_main((True, value))
    return value


def check_same_on_every_rank(what: str, value: str, where: str, hint: str) -> None:
    """Stop every rank with one error that lists each rank's host, ``where`` and ``value``, and says what to do
    (``hint``), unless all ranks hold the same ``value`` (a dataset's digest: each machine reads its own copy,
    so the copies must match)."""
    if not is_distributed():
        return
    seen: list = [None] * dist.get_world_size()
    dist.all_gather_object(seen, (socket.gethostname(), where, value))
    if len({v for _, _, v in seen}) > 1:
        listed = "; ".join(f"rank {r} on {host}: {v} ({w})" for r, (host, w, v) in enumerate(seen))
        raise ValueError(f"the ranks do not hold the same {what}: {listed}: {hint}")


def gathered(value: T) -> list[T]:
    """Every rank's ``value``, in rank order, on every rank (``[value]`` without torchrun)."""
    if not is_distributed():
        return [value]
    values: list = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


def agreed_steps(steps: int) -> int:
    """The steps of an epoch on every rank: the shortest shard's (shards differ by a batch or so)."""
    if not is_distributed():
        return steps
    shortest = torch.tensor([steps])
    dist.all_reduce(shortest, op=dist.ReduceOp.MIN)
    return int(shortest)


def summed(total: float, count: int) -> tuple[float, int]:
    """``total`` and ``count`` summed over the ranks."""
    if not is_distributed():
        return total, count
    sums = torch.tensor([total, count], dtype=torch.float64)
    dist.all_reduce(sums)
    return float(sums[0]), int(sums[1])


def data_parallel(model: nn.Module, device: torch.device) -> DistributedDataParallel:
    """``model`` wrapped for DistributedDataParallel training, its embeddings switched to dense gradients.

    Dense, because gloo's all-reduce of sparse gradients corrupted the heap of a worker now and then
    (malloc abort in backward) and NCCL has no sparse all-reduce at all.
    """
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            module.sparse = False
    with warnings.catch_warnings():  # broadcast_buffers is being renamed; buffers are constants here
        warnings.simplefilter("ignore", FutureWarning)
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                       broadcast_buffers=False)
