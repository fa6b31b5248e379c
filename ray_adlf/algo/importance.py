"""Truncated importance sampling (TIS) for rollouts sampled by a different policy.

When the sampling engine's token logprobs ``logp_engine`` differ from the learner's own
``logp_old`` for the same tokens (a stale policy in asynchronous training, or just engine/learner
numerics), the PPO surrogate is off-policy. TIS reweights each token by the importance ratio of
the learner's old policy to the engine's, truncated at ``cap`` to bound the variance::

    x_t = clamp(m_t * (logp_old_t - logp_engine_t), -20, 20)     (``kl.masked_log_ratio``)
    w_t = min(exp(x_t), cap) * m_t                                (detached, 0 at padding)

Apply them with ``losses.policy_loss(..., is_weights=w)`` (or ``gspo_policy_loss``), which
multiplies the per-token surrogate by ``w`` before aggregation (``weighted``). stats over valid tokens: ``mean`` and ``max`` of ``w``
and ``truncated_fraction``, the share with ``exp(x_t) > cap``.
"""

from __future__ import annotations

import torch

from ray_adlf.algo.kl import masked_log_ratio
from ray_adlf.algo.masked import masked_mean


def truncated_is_weights(
    learner_old_logp: torch.Tensor,
    engine_logp: torch.Tensor,
    mask: torch.Tensor,
    cap: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``w = min(exp(logp_old - logp_engine), cap)`` per valid token, 0 elsewhere, detached.

    learner_old_logp, engine_logp, mask: [B, T] -> (weights [B, T], {"mean", "max",
    "truncated_fraction"} as detached scalars over valid tokens, 0 when there is none).
    """
    if cap <= 0:
        raise ValueError(f"cap must be > 0, got {cap}")
    with torch.no_grad():
        valid = mask.bool()
        raw = torch.exp(masked_log_ratio(learner_old_logp, engine_logp, valid))
        weights = torch.where(valid, raw.clamp(max=cap), torch.zeros_like(raw))
        stats = {
            "mean": masked_mean(weights, valid),
            # weights >= 0 and 0 off the mask: their max is the valid max, 0 when none is.
            "max": weights.max() if weights.numel() else weights.new_zeros(()),
            "truncated_fraction": masked_mean((raw > cap).to(raw.dtype), valid),
        }
    return weights, stats


def weighted(per_token: torch.Tensor, is_weights: torch.Tensor | None) -> torch.Tensor:
    """``per_token * w`` with the weights as constants (no gradient); unchanged for None.
    per_token, is_weights: [B, T]."""
    if is_weights is None:
        return per_token
    if is_weights.shape != per_token.shape:
        raise ValueError(
            f"is_weights {tuple(is_weights.shape)} do not match the loss {tuple(per_token.shape)}"
        )
    return per_token * is_weights.detach()
