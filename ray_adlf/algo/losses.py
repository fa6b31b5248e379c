"""PPO losses and per-token log-probabilities / entropies.

- policy (clipped surrogate, Schulman et al. 2017), ``ratio = exp(logp - old_logp)``::

      loss = masked_mean(max(-A * ratio, -A * clip(ratio, 1 - eps, 1 + eps)))

  stats: ``clip_fraction`` = share of valid tokens where the clipped term is the larger one;
  ``approx_kl`` = masked mean of k3 for KL(old || new) from tokens sampled by the old policy,
  ``(ratio - 1) - log(ratio)``.
- value (clipped like PPO2), ``V_c = V_old + clip(V - V_old, -eps_v, eps_v)``::

      loss = 0.5 * masked_mean(max((V - R)^2, (V_c - R)^2))

  stats: ``clip_fraction`` = share of valid tokens where the clipped error is the larger one.
- ``entropy_from_logits``: ``H = logsumexp(z) - sum softmax(z) * z``.
- ``logprobs_from_logits``: ``log_softmax(z / temperature)[token]``; the same temperature must be
  used for the policy, the reference and the sampling engine.
- ``kl_loss``: ``masked_mean(kl_estimate(logp, logp_ref))``, the "KL as a loss term" option (k3
  is the usual choice; the gradient of the k1 mean is zero in expectation, so k1 does not act as
  a penalty there).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ray_adlf.algo.kl import kl_estimate, kl_k3
from ray_adlf.algo.masked import masked_mean


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped PPO surrogate ``masked_mean(max(-A r, -A clip(r, 1-eps, 1+eps)))``.

    logp, old_logp, advantages, mask: [B, T] -> (scalar loss, {"clip_fraction", "approx_kl"}
    as detached scalars).
    """
    ratio = torch.exp(logp - old_logp)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        stats = {
            "clip_fraction": masked_mean((clipped > unclipped).to(logp.dtype), mask),
            "approx_kl": masked_mean(kl_k3(old_logp, logp), mask),
        }
    return loss, stats


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip_eps_value: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped value loss ``0.5 * masked_mean(max((V - R)^2, (V_c - R)^2))``.

    values, old_values, returns, mask: [B, T] -> (scalar loss, {"clip_fraction"} detached).
    """
    clipped_values = old_values + torch.clamp(values - old_values, -clip_eps_value, clip_eps_value)
    unclipped_error = (values - returns) ** 2
    clipped_error = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped_error, clipped_error), mask)
    with torch.no_grad():
        stats = {
            "clip_fraction": masked_mean((clipped_error > unclipped_error).to(values.dtype), mask)
        }
    return loss, stats


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of ``softmax(logits)``: ``logsumexp(z) - sum_v softmax(z)_v z_v``. [B, T, V] -> [B, T]."""
    return torch.logsumexp(logits, dim=-1) - (F.softmax(logits, dim=-1) * logits).sum(dim=-1)


def logprobs_from_logits(
    logits: torch.Tensor, tokens: torch.Tensor, temperature: float
) -> torch.Tensor:
    """``log_softmax(logits / temperature)`` at ``tokens``, computed in at least float32.

    logits: [B, T, V]; tokens: [B, T] (int64) -> [B, T].
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    logprobs = F.log_softmax(logits / temperature, dim=-1)
    return logprobs.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def kl_loss(
    logp: torch.Tensor, logp_ref: torch.Tensor, mask: torch.Tensor, estimator: str
) -> torch.Tensor:
    """``masked_mean(kl_estimate(logp, logp_ref, estimator))``. [B, T] each -> scalar."""
    return masked_mean(kl_estimate(logp, logp_ref, estimator), mask)
