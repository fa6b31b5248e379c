"""Token-level reward shaping for PPO.

``r_t = -beta * kl_t`` on every valid response token, plus the sequence ``score`` added at the
last valid response token of each row; ``r_t = 0`` at masked positions.

"Last valid token" is the largest index where ``response_mask`` is 1, which for the usual
right-padded mask (1s then 0s) is ``sum(mask) - 1``. A row with no valid token gets no score and
all-zero rewards (its score is dropped, so callers should filter empty responses first).
"""

from __future__ import annotations

import torch


def per_token_rewards(
    score: torch.Tensor, kl: torch.Tensor, response_mask: torch.Tensor, beta: float
) -> torch.Tensor:
    """``r_t = -beta * kl_t * m_t + score * [t == last valid t]``.

    score: [B]; kl, response_mask: [B, T] -> rewards [B, T]. Pass ``kl`` without gradient.
    """
    if kl.shape != response_mask.shape or score.shape != kl.shape[:1]:
        raise ValueError(
            f"shapes: score {tuple(score.shape)}, kl {tuple(kl.shape)}, "
            f"response_mask {tuple(response_mask.shape)}; expected [B], [B, T], [B, T]"
        )
    valid = response_mask.bool()
    rewards = torch.where(valid, -beta * kl, torch.zeros_like(kl))
    positions = torch.arange(kl.shape[1], device=kl.device).expand_as(valid)
    last = torch.where(valid, positions, -1).max(dim=1).values
    at_last = positions == last.unsqueeze(1)  # all False for a row without valid tokens
    return rewards + at_last.to(kl.dtype) * score.to(kl.dtype).unsqueeze(1)
