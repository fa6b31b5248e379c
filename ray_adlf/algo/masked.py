"""Statistics over valid tokens only.

``mask`` has the shape of ``x`` and holds 0/1 or bool; positions where it is 0 never enter a
statistic, even when they hold inf or NaN (they are selected away, not multiplied by 0).

- ``masked_sum = sum_{m=1} x``
- ``masked_mean = masked_sum / n`` with ``n = sum(m)``; 0 where ``n == 0``
- ``masked_var = mean_{m=1} (x - mean)^2``, biased (divide by n) unless ``unbiased`` (n - 1)
- ``masked_whiten = (x - mean) / sqrt(var + eps)`` with the biased variance, plus ``mean`` again
  when ``shift_mean`` is False; 0 at masked positions.
"""

from __future__ import annotations

import torch


def _valid(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    if mask.shape != x.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} != x shape {tuple(x.shape)}")
    return mask.bool()


def masked_sum(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """``sum_{mask=1} x`` over ``dim`` (all elements when None). x, mask: same shape, e.g. [B, T]."""
    kept = torch.where(_valid(x, mask), x, torch.zeros_like(x))
    return kept.sum() if dim is None else kept.sum(dim)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """``sum_{mask=1} x / max(n, 1)`` with ``n = sum(mask)`` over ``dim`` (all when None).

    x, mask: same shape, e.g. [B, T]. Returns a scalar, or x reduced over ``dim``; an all-masked
    slice gives 0.
    """
    count = mask.bool().sum() if dim is None else mask.bool().sum(dim)
    return masked_sum(x, mask, dim) / count.clamp(min=1).to(x.dtype)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = False) -> torch.Tensor:
    """Scalar ``sum_{mask=1} (x - mean)^2 / d`` with ``d = n`` (biased, default) or ``n - 1``.

    x, mask: same shape, e.g. [B, T]. The unbiased form needs at least 2 valid elements.
    """
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    if not unbiased:
        return var
    n = int(mask.bool().sum())
    if n < 2:
        raise ValueError(f"unbiased variance needs at least 2 valid elements, got {n}")
    return var * n / (n - 1)


def whiten(
    x: torch.Tensor, mask: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, eps: float = 1e-8
) -> torch.Tensor:
    """``(x - mean) / sqrt(var + eps)`` with given moments, 0 at masked positions.

    x, mask: same shape, e.g. [B, T]; mean, var: scalars (this rank's, or every rank's)."""
    whitened = (x - mean) * torch.rsqrt(var + eps)
    return torch.where(_valid(x, mask), whitened, torch.zeros_like(whitened))


def masked_whiten(
    x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8
) -> torch.Tensor:
    """``whiten`` with the valid elements' mean and biased var; ``+ mean`` if not shift_mean.

    x, mask: same shape, e.g. [B, T]. Returns x's shape with 0 at masked positions.
    """
    mean = masked_mean(x, mask)
    whitened = whiten(x, mask, mean, masked_var(x, mask), eps)
    if not shift_mean:
        whitened = torch.where(_valid(x, mask), whitened + mean, whitened)
    return whitened
