"""REINFORCE++ advantages (Hu 2025): critic-free returns-to-go, whitened over the whole batch.

Token rewards ``r [B, T]`` as for PPO (``rewards.per_token_rewards``: ``-beta * kl_t`` on every
valid token plus the score at the last one). Returns-to-go, per row, backwards::

    G_t = m_t r_t + gamma * G_{t+1}      (G_T = 0);   G_t = 0 where m_t = 0

A masked position inside a row (e.g. tool output in a multi-turn response) adds no reward but
passes the later return through (discounted by gamma like any position); with the usual
right-padded mask and gamma = 1 (the default), ``G_t`` is the sum of the rewards from t on.

- REINFORCE++: ``A = whiten(G)`` with the mean and the biased variance over ALL valid tokens of
  the batch (``masked.masked_whiten``: ``(G - mean) / sqrt(var + eps)``); no per-group baseline.
- REINFORCE++-baseline: the scores first lose their group mean (``s_i - mean_g(s)``, groups of G
  contiguous samples of one prompt), then the token rewards, returns and global whitening above.

Data parallel: ``masked_whiten`` sees only this rank's tokens. For whitening over the global
batch, take ``discounted_returns`` and whiten with all-reduced sums (sum G, sum G^2, count); the
group baseline needs every group on one rank.
"""

from __future__ import annotations

import torch

from ray_adlf.algo.advantages import group_advantages
from ray_adlf.algo.masked import masked_whiten
from ray_adlf.algo.rewards import per_token_rewards


def discounted_returns(
    token_rewards: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0
) -> torch.Tensor:
    """``G_t = m_t r_t + gamma G_{t+1}``, 0 where mask is 0; no gradient flows through the result.

    token_rewards, mask: [B, T] -> returns [B, T].
    """
    if token_rewards.dim() != 2 or token_rewards.shape != mask.shape:
        raise ValueError(
            f"expected token_rewards and mask of one shape [B, T], got "
            f"{tuple(token_rewards.shape)} and {tuple(mask.shape)}"
        )
    with torch.no_grad():
        valid = mask.bool()
        rewards = torch.where(valid, token_rewards, torch.zeros_like(token_rewards))
        returns = torch.zeros_like(rewards)
        running = rewards.new_zeros(rewards.shape[0])
        for t in reversed(range(rewards.shape[1])):
            running = rewards[:, t] + gamma * running
            returns[:, t] = running
        return torch.where(valid, returns, torch.zeros_like(returns))


def reinforce_pp_advantages(
    token_rewards: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0, eps: float = 1e-8
) -> tuple[torch.Tensor, torch.Tensor]:
    """REINFORCE++: ``A = masked_whiten(G, mask)`` over every valid token of the batch.

    token_rewards, mask: [B, T] -> (advantages [B, T], returns G [B, T]), both 0 where mask is
    0 and without gradient.
    """
    returns = discounted_returns(token_rewards, mask, gamma)
    return masked_whiten(returns, mask, eps=eps), returns


def reinforce_pp_baseline_advantages(
    scores: torch.Tensor,
    kl: torch.Tensor,
    mask: torch.Tensor,
    group_size: int,
    beta: float,
    gamma: float = 1.0,
    eps: float = 1e-8,
) -> tuple[torch.Tensor, torch.Tensor]:
    """REINFORCE++-baseline: ``s_i - mean_g(s)`` -> token rewards ``-beta kl_t`` (+ centred score
    at the last valid token) -> returns-to-go -> global whitening (module docstring).

    scores: [B] with B = N * group_size (groups contiguous); kl, mask: [B, T] -> (advantages
    [B, T], returns [B, T]). Pass ``kl`` without gradient.
    """
    centred = group_advantages(scores, group_size, "grpo", normalize_std=False)
    token_rewards = per_token_rewards(centred, kl, mask, beta)
    return reinforce_pp_advantages(token_rewards, mask, gamma, eps)
