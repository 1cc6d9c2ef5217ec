"""The few collectives training needs, in plain ``torch.distributed``; each is the identity on one process.

Gradient scale of a gathered batch: the backward of :func:`gather_batch` sums, over processes, the gradient with
respect to this process's slice. When every process computes the same loss ``L`` from the gathered batch, each
therefore receives ``W * dL/d(own slice)``; DDP then averages parameter gradients over the ``W`` processes, and
the two factors cancel: the parameter gradient equals the single-process gradient of ``L`` on the global batch.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def world_size() -> int:
    """Number of processes of the default group; 1 when ``torch.distributed`` is not initialised."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_batch(x: Tensor) -> Tensor:
    """Every process's ``x`` concatenated along the first dimension, in rank order: the global batch.

    All processes must pass the same shape (an uneven gather stalls). Differentiable when ``x`` requires grad.
    """
    if world_size() == 1:
        return x
    return _GatherBatch.apply(x) if x.requires_grad else _all_gather_cat(x)


def _all_gather_cat(x: Tensor) -> Tensor:
    parts = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


class _GatherBatch(torch.autograd.Function):
    """All-gather along dim 0 whose backward returns this process's slice of the gradient summed over processes."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.rows = x.shape[0]
        return _all_gather_cat(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)  # a reduce-scatter; gloo has none
        start = dist.get_rank() * ctx.rows
        return grad[start : start + ctx.rows]


def sum_over_processes(x: Tensor) -> Tensor:
    """Element-wise sum of ``x`` over all processes (in place), e.g. of rows each process filled for its samples."""
    if world_size() > 1:
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x


def gather_objects(obj) -> list:
    """Every process's picklable ``obj``, in rank order (a list of one on one process)."""
    if world_size() == 1:
        return [obj]
    gathered = [None] * world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def any_process(flag: bool, device: torch.device) -> bool:
    """Whether ``flag`` is true on any process: a decision every process must take alike (one one-float all-reduce
    on several processes; none on one)."""
    if world_size() == 1:
        return flag
    return bool(sum_over_processes(torch.tensor([float(flag)], device=device)) > 0)


def release_process_group() -> None:
    """Destroy the default process group, if one is up, at the end of a process's run: gloo's worker threads then
    stop while the interpreter is alive. A process that exits with the group up can abort at interpreter
    finalisation ("terminate called without an active exception", SIGABRT: pytorch/pytorch#190489), which a
    launcher reports as a failed run."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
