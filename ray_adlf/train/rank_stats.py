"""Statistics over the rows of every learner rank: what one rank would compute on the whole batch.

Each helper all-reduces sums (in float64) when ``torch.distributed`` is initialised and is the
plain local statistic otherwise, so the same code runs on one rank and on N.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from ray_adlf.algo import whiten


def distributed() -> bool:
    """Whether a process group is up (Ray Train's DDP / FSDP ranks)."""
    return dist.is_available() and dist.is_initialized()


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """The sum of ``values`` over the ranks (a copy; ``values`` itself is left as it was)."""
    if distributed():
        values = values.clone()
        dist.all_reduce(values)
    return values


def global_max(x: torch.Tensor) -> float:
    """The largest element of ``x`` on any rank (``-inf`` where no rank has one)."""
    local = x.max() if x.numel() else torch.tensor(float("-inf"), device=x.device)
    local = local.detach().double().reshape(1)
    if distributed():
        local = local.clone()
        dist.all_reduce(local, op=dist.ReduceOp.MAX)
    return local.item()


def global_masked_mean(x: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean of ``x`` [B, T] over valid tokens of every rank."""
    total = all_reduce_sum(torch.stack([(x * mask).sum(), mask.sum()]).double())
    return (total[0] / total[1].clamp(min=1)).item()


def global_row_mean(x: torch.Tensor) -> float:
    """Mean of ``x`` [B] over the rows of every rank."""
    total = all_reduce_sum(
        torch.stack([x.sum(), torch.tensor(float(x.numel()), device=x.device)]).double()
    )
    return (total[0] / total[1].clamp(min=1)).item()


def global_masked_whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``algo.whiten`` with the mean and biased var over valid tokens of every rank. [B, T]."""
    mask = mask.to(x.dtype)
    sums = all_reduce_sum(
        torch.stack([(x * mask).sum(), (x * x * mask).sum(), mask.sum()]).double()
    )
    count = sums[2].clamp(min=1)
    mean = sums[0] / count
    var = (sums[1] / count - mean * mean).clamp(min=0)
    return whiten(x, mask, mean.to(x.dtype), var.to(x.dtype), eps)


def loss_counts_per_rank(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N / W, S / W)``: the valid tokens N and the sequences with one S of every rank's
    minibatch, over the W ranks. Passed to ``algo.aggregate_loss`` as its global counts, each
    rank's loss is its share of the whole minibatch's, and the ranks' gradient AVERAGE (DDP,
    FSDP) is the gradient of the whole minibatch's loss."""
    valid = mask.bool()
    counts = torch.stack([valid.sum(), valid.any(dim=1).sum()]).double()
    world = dist.get_world_size() if distributed() else 1
    tokens, sequences = all_reduce_sum(counts) / world
    return tokens, sequences


def finite_on_every_rank(loss: torch.Tensor, grad_norm: torch.Tensor) -> tuple[bool, bool]:
    """Whether the loss, and the gradient norm, are finite on every rank (one all-reduce)."""
    bad = torch.stack([~torch.isfinite(loss), ~torch.isfinite(grad_norm)]).float()
    loss_bad, grads_bad = all_reduce_sum(bad.to(grad_norm.device)).tolist()
    return loss_bad == 0, grads_bad == 0
