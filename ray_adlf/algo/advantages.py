"""Advantage estimators.

GAE (Schulman et al. 2016), per row, backwards over the valid tokens::

    delta_t = r_t + gamma * V_{t+1} - V_t        (V_{t+1} = 0 after the last valid token)
    A_t     = delta_t + gamma * lam * A_{t+1}    (A_{t+1} = 0 after the last valid token)
    returns = A + V;   A = returns = 0 at masked positions

The mask is assumed right-padded (1s then 0s); a 0 inside a row would end the trajectory there.

Group baselines over the G samples of one prompt (scores ``s``, groups contiguous)::

    grpo:  A_i = s_i - mean_g(s)                               (Shao et al. 2024, DeepSeekMath)
    rloo:  A_i = s_i - mean_{j != i} s_j = G / (G - 1) * (s_i - mean_g(s))   (Ahmadian et al. 2024)
    normalize_std: A_i <- A_i / (std_g(s) + eps), std_g the POPULATION (biased, divide by G) std

Why the population std: the group is the whole set being standardised, not a sample from which
we estimate a spread; with it each group's GRPO advantages have mean 0 and variance exactly 1 (up
to eps; all 0 for equal scores), it matches the biased variance used for whitening. DeepSeekMath
/ TRL use the sample (unbiased, G - 1) std, which makes advantages smaller by sqrt((G - 1) / G)
(0.87 at G = 4) -- a constant rescale, equivalent to a smaller learning rate.

Dr. GRPO (Liu et al. 2025, "Understanding R1-Zero-Like Training") removes both length and
difficulty biases of GRPO: the advantage is the group-mean baseline WITHOUT the std division,
``group_advantages(scores, G, "grpo", normalize_std=False)``, and the loss is normalised by a
constant, ``aggregate_loss(..., "seq_mean_token_sum_norm", constant_length=max_new_tokens)``.
"""

from __future__ import annotations

import torch


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation; no gradient flows through the result.

    rewards, values, mask: [B, T] -> (advantages [B, T], returns [B, T]), 0 where mask is 0.
    """
    if not rewards.shape == values.shape == mask.shape:
        raise ValueError(
            f"shapes differ: rewards {tuple(rewards.shape)}, values {tuple(values.shape)}, "
            f"mask {tuple(mask.shape)}"
        )
    with torch.no_grad():
        valid = mask.bool()
        rewards = torch.where(valid, rewards, torch.zeros_like(rewards))
        values = torch.where(valid, values, torch.zeros_like(values))
        advantages = torch.zeros_like(values)
        next_value = values.new_zeros(values.shape[0])
        next_advantage = values.new_zeros(values.shape[0])
        for t in reversed(range(values.shape[1])):
            delta = rewards[:, t] + gamma * next_value - values[:, t]
            advantage = delta + gamma * lam * next_advantage
            advantages[:, t] = torch.where(valid[:, t], advantage, torch.zeros_like(advantage))
            next_value = values[:, t]
            next_advantage = advantages[:, t]
        returns = torch.where(valid, advantages + values, torch.zeros_like(values))
    return advantages, returns


def group_advantages(
    scores: torch.Tensor,
    group_size: int,
    method: str,
    normalize_std: bool,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Per-sample advantages from a group baseline ("grpo" or "rloo"), see the module docstring.

    scores: [N * G] (groups contiguous) or [N, G]; returns the same shape. ``group_size >= 2``.
    """
    if group_size < 2:
        raise ValueError(
            f"group_size must be >= 2 (a group of one has no baseline), got {group_size}"
        )
    if scores.dim() == 1 and scores.shape[0] % group_size == 0:
        grouped = scores.reshape(-1, group_size)
    elif scores.dim() == 2 and scores.shape[1] == group_size:
        grouped = scores
    else:
        raise ValueError(
            f"scores of shape {tuple(scores.shape)} do not split into groups of {group_size}; "
            "expected [N * group_size] or [N, group_size]"
        )
    mean = grouped.mean(dim=1, keepdim=True)
    if method == "grpo":
        advantages = grouped - mean
    elif method == "rloo":
        advantages = (grouped - mean) * group_size / (group_size - 1)
    else:
        raise ValueError(f"unknown group advantage method {method!r}; expected 'grpo' or 'rloo'")
    if normalize_std:
        advantages = advantages / (grouped.std(dim=1, keepdim=True, correction=0) + eps)
    return advantages.reshape(scores.shape)


def broadcast_to_tokens(advantages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Give every valid token its sequence's advantage: ``A_{b,t} = A_b * m_{b,t}``.

    advantages: [B]; mask: [B, T] -> [B, T], 0 at masked positions.
    """
    if advantages.shape != mask.shape[:1]:
        raise ValueError(
            f"advantages {tuple(advantages.shape)} do not match mask {tuple(mask.shape)}"
        )
    expanded = advantages.unsqueeze(1).expand(mask.shape)
    return torch.where(mask.bool(), expanded, torch.zeros_like(expanded))
