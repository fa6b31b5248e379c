"""DAPO helpers (Yu et al. 2025): dynamic sampling and overlong reward shaping.

DAPO's other two parts are options of ``losses.policy_loss``: clip-higher (``clip_eps=0.2,
clip_eps_high=0.28``) and the token-level loss (``loss_agg_mode="token_mean"``).

Dynamic sampling: a group (the G responses of one prompt, contiguous) whose scores are all equal
has zero group-baseline advantage on every response, so it adds no gradient; DAPO drops such
groups and samples more prompts until the batch is full (that refill loop belongs to the
trainer)::

    keep_g = max_i s_gi - min_i s_gi > atol            (atol = 0: exactly equal scores)

Overlong reward shaping, DAPO eq. (13), with L = response length, L_max = ``max_length``,
L_cache = ``cache_length`` and factor = ``penalty_factor`` (1 in the paper)::

    R(L) = 0                                          L <= L_max - L_cache
    R(L) = (L_max - L_cache - L) / L_cache * factor   L_max - L_cache < L <= L_max
    R(L) = -factor                                    L > L_max

linear from 0 down to ``-factor`` across the last L_cache tokens (continuous at L_max), added to
the task score. The paper uses L_max = 20480 with L_cache = 4096.
"""

from __future__ import annotations

import torch


def _grouped(scores: torch.Tensor, group_size: int) -> torch.Tensor:
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    if scores.dim() == 1 and scores.shape[0] % group_size == 0:
        return scores.reshape(-1, group_size)
    if scores.dim() == 2 and scores.shape[1] == group_size:
        return scores
    raise ValueError(
        f"scores of shape {tuple(scores.shape)} do not split into groups of {group_size}; "
        "expected [N * group_size] or [N, group_size]"
    )


def groups_with_reward_variance(
    scores: torch.Tensor, group_size: int, atol: float = 0.0
) -> torch.Tensor:
    """True for each group whose scores are not all equal: ``max - min > atol``.

    scores: [N * G] (groups contiguous) or [N, G] -> bool [N].
    """
    grouped = _grouped(scores, group_size)
    spread = grouped.max(dim=1).values - grouped.min(dim=1).values
    return spread > atol


def select_groups(
    scores: torch.Tensor, group_size: int, max_groups: int | None = None, atol: float = 0.0
) -> torch.Tensor:
    """Row indices of the samples in the groups kept by ``groups_with_reward_variance``.

    scores: [N * G] (groups contiguous) or [N, G] -> int64 [K * G], in order, each kept group's
    G rows contiguous (row index ``g * G + i`` into the flat batch); ``max_groups``: keep at most
    the first that many kept groups (for filling a batch of fixed size).
    """
    keep = groups_with_reward_variance(scores, group_size, atol)
    groups = torch.nonzero(keep).squeeze(1)
    if max_groups is not None:
        if max_groups < 0:
            raise ValueError(f"max_groups must be >= 0, got {max_groups}")
        groups = groups[:max_groups]
    offsets = torch.arange(group_size, device=groups.device)
    return (groups.unsqueeze(1) * group_size + offsets).reshape(-1)


def overlong_penalty(
    lengths: torch.Tensor, max_length: int, cache_length: int, penalty_factor: float = 1.0
) -> torch.Tensor:
    """DAPO's soft overlong punishment R(L) (module docstring). lengths: [B] -> float [B] (<= 0).

    ``0 < cache_length <= max_length``; integer lengths give the default float dtype.
    """
    if not 0 < cache_length <= max_length:
        raise ValueError(
            f"need 0 < cache_length <= max_length, got cache_length={cache_length}, "
            f"max_length={max_length}"
        )
    if penalty_factor < 0:
        raise ValueError(f"penalty_factor must be >= 0, got {penalty_factor}")
    dtype = lengths.dtype if lengths.is_floating_point() else torch.get_default_dtype()
    lengths = lengths.to(dtype)
    expected = max_length - cache_length
    ramp = (expected - lengths) / cache_length * penalty_factor
    penalty = torch.where(lengths <= expected, torch.zeros_like(lengths), ramp)
    return torch.where(lengths > max_length, torch.full_like(lengths, -penalty_factor), penalty)
