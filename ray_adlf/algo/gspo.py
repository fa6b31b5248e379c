"""GSPO: Group Sequence Policy Optimization (Zheng et al. 2025), token-gradient form.

Sequence-level importance ratio of response i over its ``n_i`` valid tokens (geometric mean of
the token ratios; the token log-ratios go through ``kl.masked_log_ratio``, so padding never
enters and each is clamped to [-20, 20])::

    s_i = exp( 1/n_i sum_t m_it (logp_it - old_logp_it) )

GSPO-token gives every token the ratio ``s_it = sg[s_i] * exp(logp_it - sg[logp_it])`` (``sg`` =
stop-gradient): its VALUE is ``s_i`` and its gradient w.r.t. ``logp_it`` is ``s_i``. The loss::

    l_it = max(-A_it s_it, -A_it clip(s_it, 1 - eps_low, 1 + eps_high))
    l_it <- w_it * l_it          (TIS weights ``is_weights``, constants; none by default)
    loss = aggregate_loss(l, m, "seq_mean_token_mean") = 1/S sum_i 1/n_i sum_t l_it

With one advantage per sequence (``A_it = A_i``) the value is GSPO's sequence objective
``1/S sum_i max(-A_i s_i, -A_i clip(s_i, ...))`` and so is the gradient: token t of an unclipped
sequence gets ``-A_i s_i / (n_i S)`` either way. Per-token advantages ``[B, T]`` are the
GSPO-token generalisation. The paper's clip ranges are tiny because s_i is a per-token geometric
mean: eps_low = 3e-4, eps_high = 4e-4 (the defaults here).

stats: ``clip_fraction`` = share of valid tokens whose clipped term is the larger one (the paper
reports this token share); ``approx_kl`` = masked mean of the token k3 ``(r - 1) - log r`` of
KL(old || new); ``seq_ratio_mean`` = mean of ``s_i`` over rows with a valid token.

``loss_agg_mode`` (default the paper's ``seq_mean_token_mean``) and the counts go to
``aggregate_loss`` as for ``losses.policy_loss``.
"""

from __future__ import annotations

import torch

from ray_adlf.algo.advantages import broadcast_to_tokens
from ray_adlf.algo.aggregation import aggregate_loss
from ray_adlf.algo.importance import weighted
from ray_adlf.algo.kl import masked_log_ratio
from ray_adlf.algo.masked import masked_mean


def gspo_policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_eps_low: float = 3e-4,
    clip_eps_high: float = 4e-4,
    *,
    is_weights: torch.Tensor | None = None,
    loss_agg_mode: str = "seq_mean_token_mean",
    constant_length: int | None = None,
    global_token_count: float | torch.Tensor | None = None,
    global_sequence_count: float | torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """GSPO-token clipped surrogate with the sequence ratio ``s_i`` (module docstring).

    logp, old_logp, mask: [B, T]; advantages: [B] (one per sequence) or [B, T]; ``is_weights``
    [B, T] (detached here) -> (scalar loss, {"clip_fraction", "approx_kl", "seq_ratio_mean"}
    as detached scalars). The last four arguments go to ``aggregate_loss``.
    """
    if logp.dim() != 2 or old_logp.shape != logp.shape or mask.shape != logp.shape:
        raise ValueError(
            f"expected logp, old_logp, mask of one shape [B, T], got {tuple(logp.shape)}, "
            f"{tuple(old_logp.shape)}, {tuple(mask.shape)}"
        )
    if advantages.dim() == 1:
        advantages = broadcast_to_tokens(advantages, mask)
    elif advantages.shape != logp.shape:
        raise ValueError(f"advantages {tuple(advantages.shape)} are neither [B] nor [B, T]")
    valid = mask.bool()
    token_log_ratio = masked_log_ratio(logp, old_logp, valid)
    seq_log_ratio = masked_mean(token_log_ratio, valid, dim=1)  # [B], within [-20, 20]
    kept_logp = torch.where(valid, logp, torch.zeros_like(logp))  # no junk in the gradient path
    log_s = seq_log_ratio.detach().unsqueeze(1) + kept_logp - kept_logp.detach()
    ratio = torch.exp(log_s)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_eps_low, 1.0 + clip_eps_high)
    per_token = torch.maximum(unclipped, clipped)
    per_token = weighted(per_token, is_weights)
    loss = aggregate_loss(
        per_token,
        valid,
        loss_agg_mode,
        constant_length=constant_length,
        global_token_count=global_token_count,
        global_sequence_count=global_sequence_count,
    )
    with torch.no_grad():
        token_ratio = torch.exp(token_log_ratio)
        has_tokens = valid.any(dim=1)
        stats = {
            "clip_fraction": masked_mean((clipped > unclipped).to(logp.dtype), valid),
            "approx_kl": masked_mean(token_ratio - 1 - token_log_ratio, valid),
            "seq_ratio_mean": masked_mean(torch.exp(seq_log_ratio), has_tokens),
        }
    return loss, stats
