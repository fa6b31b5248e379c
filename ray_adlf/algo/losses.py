"""PPO losses and per-token log-probabilities / entropies.

- policy (clipped surrogate, Schulman et al. 2017), ``r = exp(x)`` with the log-ratio
  ``x = clamp(m * (logp - old_logp), -20, 20)`` (``kl.masked_log_ratio``: padding never reaches
  ``exp``; for |x| <= 20 this is the plain ratio)::

      l_t  = max(-A r, -A clip(r, 1 - eps_low, 1 + eps_high))     eps_low = clip_eps,
                                                                  eps_high = clip_eps_high or eps_low
      dual clip (Ye et al. 2020), c = dual_clip > 1, only where A < 0:
      l_t <- min(l_t, -c A)
      TIS (truncated importance sampling): l_t <- w_t * l_t, w = is_weights (constants)
      loss = aggregate_loss(l, m, loss_agg_mode)                  (token_mean by default)

  ``clip_eps_high > clip_eps`` is DAPO's clip-higher (eps_low 0.2, eps_high 0.28). The dual
  clip bounds the loss of a negative-advantage token whose ratio has run far above 1 by
  ``-c A``; where it binds the token's gradient is 0. With the defaults (no eps_high, no dual
  clip, no weights, token_mean) this is the classic PPO loss.
  stats: ``clip_fraction`` = share of valid tokens where the clipped term is the larger one;
  ``dual_clip_fraction`` = share of valid tokens where the dual bound binds (0 without it);
  ``approx_kl`` = masked mean of k3 for KL(old || new) from tokens sampled by the old policy,
  ``(r - 1) - log(r)``.
- value (clipped like PPO2), ``V_c = V_old + clip(V - V_old, -eps_v, eps_v)``::

      loss = 0.5 * masked_mean(max((V - R)^2, (V_c - R)^2))

  stats: ``clip_fraction`` = share of valid tokens where the clipped error is the larger one.
- ``entropy_from_logits``: ``H = logsumexp(z) - sum softmax(z) * z``.
- ``logprobs_from_logits``: ``log_softmax(z / temperature)[token]``; the same temperature must be
  used for the policy, the reference and the sampling engine.
- ``kl_loss``: ``masked_mean(kl_estimate(logp, logp_ref, mask))``, the "KL as a loss term"
  option (k3 is the usual choice; the gradient of the k1 mean is zero in expectation, so k1 does
  not act as a penalty there). The mask is applied before ``exp``, so padding holding junk
  logprobs gives finite values and finite (zero) gradients.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ray_adlf.algo.aggregation import aggregate_loss
from ray_adlf.algo.importance import weighted
from ray_adlf.algo.kl import kl_estimate, masked_log_ratio
from ray_adlf.algo.masked import masked_mean


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float,
    *,
    clip_eps_high: float | None = None,
    dual_clip: float | None = None,
    is_weights: torch.Tensor | None = None,
    loss_agg_mode: str = "token_mean",
    constant_length: int | None = None,
    global_token_count: float | torch.Tensor | None = None,
    global_sequence_count: float | torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped PPO surrogate ``agg(max(-A r, -A clip(r, 1-eps_low, 1+eps_high)))`` (module doc).

    logp, old_logp, advantages, mask: [B, T]; ``is_weights`` [B, T] (detached here) ->
    (scalar loss, {"clip_fraction", "dual_clip_fraction", "approx_kl"} as detached scalars).
    ``clip_eps`` is eps_low and, unless ``clip_eps_high`` is given, eps_high; ``dual_clip`` is
    c > 1. The last four arguments go to ``aggregate_loss``.
    """
    eps_high = clip_eps if clip_eps_high is None else clip_eps_high
    if dual_clip is not None and dual_clip <= 1.0:
        raise ValueError(f"dual_clip must be > 1, got {dual_clip}")
    log_ratio = masked_log_ratio(logp, old_logp, mask)
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_eps, 1.0 + eps_high)
    per_token = torch.maximum(unclipped, clipped)
    dual_bound = torch.zeros_like(per_token, dtype=torch.bool)
    if dual_clip is not None:
        bound = -dual_clip * advantages
        dual_bound = (advantages < 0) & (per_token > bound)
        per_token = torch.where(dual_bound, bound, per_token)
    per_token = weighted(per_token, is_weights)
    loss = aggregate_loss(
        per_token,
        mask,
        loss_agg_mode,
        constant_length=constant_length,
        global_token_count=global_token_count,
        global_sequence_count=global_sequence_count,
    )
    with torch.no_grad():
        stats = {
            "clip_fraction": masked_mean((clipped > unclipped).to(logp.dtype), mask),
            "dual_clip_fraction": masked_mean(dual_bound.to(logp.dtype), mask),
            "approx_kl": masked_mean(ratio - 1 - log_ratio, mask),
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
    """``masked_mean(kl_estimate(logp, logp_ref, estimator, mask))``. [B, T] each -> scalar.

    Masked positions are zeroed before ``exp`` and contribute zero (finite) gradient.
    """
    return masked_mean(kl_estimate(logp, logp_ref, estimator, mask), mask)
