"""Data-parallel training of conv SNNs under ``torchrun`` (DistributedDataParallel).

``torchrun --nproc-per-node N`` starts N processes with ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``
set; ``session`` turns those into a process group (gloo on the CPU, nccl on CUDA) and ends it
with a barrier. Without them everything here is a no-op and training is the single-process
code path, unchanged.

What makes N processes equal to one (``docs/sca.md``, "Scale-out"):

- **The same global batches.** ``--batch-size`` is the *global* batch. Every rank draws the
  same permutation (same seed, advanced once per epoch) and takes ``batch[rank::N]`` of each
  global batch (``shard``): DistributedSampler's strided split, applied per batch and without
  padding, so the global batches are those of one process and a tail smaller than N leaves a
  rank an empty shard rather than a duplicated image.
- **The same gradient.** A rank's loss is its shard's summed cross-entropy times
  ``N / len(global batch)``; DDP averages the N gradients, which gives the gradient of the
  global batch's mean loss, also for unequal shards.
- **The same BatchNorm.** Plain BatchNorm under DDP normalises each rank's shard by its own
  statistics. ``GlobalBatchNorm2d`` all-reduces the per-channel sum, count and (second pass)
  squared deviation, so normalisation and running statistics are those of the global batch
  (``nn.SyncBatchNorm`` does this on GPUs only; this one works on gloo too).
- **The same decisions.** SCA's activity sums and counts are all-reduced before ranking
  (``offline/sca.py``); |dL/dgamma| is read after DDP's gradient all-reduce; the masks are
  then broadcast from rank 0 (``broadcast``), so every rank prunes the same channels by
  construction.

Equal up to float rounding, not bit for bit: the sums are split into per-rank parts.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Iterator, List

import torch
from torch import nn
from torch import distributed as dist
from torch.nn import functional as F

from ..errors import ModelError

_STATS_GROUP = None  # a second group for BatchNorm statistics, apart from DDP's gradient buckets


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world: int = 1
    device: str = "cpu"
    backend: str = ""

    @property
    def main(self) -> bool:
        """The rank that prints progress and writes files."""
        return self.rank == 0


def world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if world() > 1 else 0


def is_main() -> bool:
    return rank() == 0


def resolve_device(device: str) -> str:
    """``cpu`` or ``cuda`` (under torchrun: ``cuda:LOCAL_RANK``); refuses CUDA without a GPU."""
    if device not in ("cpu", "cuda"):
        raise ModelError("device %r is not one of cpu, cuda" % device)
    if device == "cpu":
        return "cpu"
    if not torch.cuda.is_available():
        raise ModelError("--device cuda: torch sees no CUDA GPU here (use --device cpu)")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if local >= torch.cuda.device_count():
        raise ModelError("--device cuda: process %d of this host but %d GPU(s) (--nproc-per-node at most the GPU count)" % (local, torch.cuda.device_count()))
    return "cuda:%d" % local


@contextlib.contextmanager
def session(device: str = "cpu") -> Iterator[Context]:
    """The process group for a ``torchrun`` launch (``WORLD_SIZE`` > 1 in the environment):
    gloo on the CPU, nccl on CUDA; on exit a barrier (so no rank leaves while rank 0 still
    writes) and the group is destroyed. Without torchrun: a one-process context."""
    dev = resolve_device(device)
    n = int(os.environ.get("WORLD_SIZE", "1"))
    if n <= 1 or (dist.is_available() and dist.is_initialized()):
        yield Context(rank(), world(), dev, dist.get_backend() if world() > 1 else "")
        return
    if not dist.is_available():
        raise ModelError("WORLD_SIZE=%d but this torch has no torch.distributed" % n)
    backend = "nccl" if dev.startswith("cuda") else "gloo"
    if dev.startswith("cuda"):
        torch.cuda.set_device(torch.device(dev))
    dist.init_process_group(backend=backend)
    global _STATS_GROUP
    _STATS_GROUP = dist.new_group(backend=backend)
    try:
        yield Context(dist.get_rank(), dist.get_world_size(), dev, backend)
        dist.barrier()
    finally:
        _STATS_GROUP = None
        dist.destroy_process_group()


def shard(idx: torch.Tensor) -> torch.Tensor:
    """This rank's part of a global batch (indices): ``idx[rank::world]``."""
    n = world()
    return idx if n == 1 else idx[rank() :: n]


def batch_loss(out: torch.Tensor, y: torch.Tensor, global_size: int) -> torch.Tensor:
    """Cross-entropy whose DDP average is the global batch's mean (see the module docstring)."""
    n = world()
    if n == 1:
        return F.cross_entropy(out, y)
    return F.cross_entropy(out, y, reduction="sum") * (n / global_size)


def _comm(t: torch.Tensor) -> torch.Tensor:
    """A copy of ``t`` where this backend can communicate it (nccl: the current GPU)."""
    if dist.get_backend() == "nccl" and t.device.type != "cuda":
        return t.to(torch.device("cuda", torch.cuda.current_device()))
    return t.clone()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum over ranks, as a new tensor on ``t``'s device. One process: ``t`` itself."""
    if world() == 1:
        return t
    c = _comm(t)
    dist.all_reduce(c)
    return c.to(t.device)


def broadcast(tensors: List[torch.Tensor]) -> List[torch.Tensor]:
    """Rank 0's values of ``tensors`` on every rank (copied into them; returns them)."""
    if world() > 1:
        for t in tensors:
            c = _comm(t)
            dist.broadcast(c, 0)
            t.copy_(c)
    return tensors


class _AllReduceSum(torch.autograd.Function):
    """Sum over the ranks of ``group``; the backward sums the gradients the same way (each
    rank's input reaches every rank's output)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, group):  # type: ignore[override]
        ctx.group = group
        y = x.clone()
        dist.all_reduce(y, group=group)
        return y

    @staticmethod
    def backward(ctx, g: torch.Tensor):  # type: ignore[override]
        g = g.clone()
        dist.all_reduce(g, group=ctx.group)
        return g, None


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the global batch over all ranks:
    sum and count, then the squared deviation from the global mean, all-reduced with autograd
    (``_AllReduceSum``: its backward all-reduces the gradients, as the chain rule asks). Running statistics as ``nn.BatchNorm2d`` (unbiased variance).
    In eval mode or in one process it *is* ``nn.BatchNorm2d``; the state dict is the same."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or world() == 1:
            return super().forward(x)
        group = _STATS_GROUP or dist.group.WORLD
        c = x.shape[1]
        count = x.new_full((1,), float(x.numel() // c))
        s = _AllReduceSum.apply(torch.cat([x.sum((0, 2, 3)), count]), group)
        n = s[c]
        mean = s[:c] / n
        d = x - mean.view(1, c, 1, 1)
        var = _AllReduceSum.apply((d * d).sum((0, 2, 3)), group) / n
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                f = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - f).add_(mean.detach(), alpha=f)
                self.running_var.mul_(1 - f).add_(var.detach() * (n / (n - 1).clamp_min(1)), alpha=f)
        y = d * torch.rsqrt(var + self.eps).view(1, c, 1, 1)
        if self.affine:
            y = y * self.weight.view(1, c, 1, 1) + self.bias.view(1, c, 1, 1)
        return y


@contextlib.contextmanager
def data_parallel(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` for training: in one process the model itself; under torchrun its BatchNorms
    become ``GlobalBatchNorm2d`` (the same modules, class swapped, so references held
    elsewhere, e.g. SCA's units, stay valid) and it is wrapped in DDP (which first broadcasts
    rank 0's parameters and buffers). Restored on exit."""
    if world() == 1:
        yield model
        return
    from torch.nn.parallel import DistributedDataParallel

    swapped = [m for m in model.modules() if type(m) is nn.BatchNorm2d]
    for m in swapped:
        m.__class__ = GlobalBatchNorm2d
    dev = next(model.parameters()).device
    try:
        yield DistributedDataParallel(model, device_ids=[dev] if dev.type == "cuda" else None)
    finally:
        for m in swapped:
            m.__class__ = nn.BatchNorm2d


def backend() -> str:
    return dist.get_backend() if world() > 1 else "none"
