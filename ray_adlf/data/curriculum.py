"""Curriculum ordering: easy examples first, the pool of allowed examples growing by a schedule.

Difficulty of example i (in [0, 1]), from its human score s_i in [0, 5] and its token length:

    difficulty_i = w * (1 - s_i / 5) + (1 - w) * rank(length_i) / (N - 1)

with w = ``score_weight``: clean, highly rated, short conversations are easy; low-rated, long
ones are hard. ``rank`` is the position in ascending length order (ties share the lowest rank).

Pacing ("competence", Platanios et al. 2019), the fraction of the easiest data available at
progress p = step / (steps - 1) in [0, 1], from c0 = ``start_fraction``:

    linear: c(p) = c0 + (1 - c0) * p
    root:   c(p) = sqrt(c0^2 + (1 - c0^2) * p)
    step:   c(p) = c0 + (1 - c0) * floor(4p) / 4   (four equal jumps, full data at the end)

``curriculum_order`` turns this into an epoch permutation: batch b is drawn at random from the
examples that are both among the easiest ceil(c(b) * N) and not yet used; when that pool is
short, the next easiest unused examples fill the batch. Every example appears exactly once.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence


def difficulty_scores(
    scores: Sequence[float], lengths: Sequence[int], score_weight: float
) -> list[float]:
    """``difficulty_i`` as in the module docstring, for N examples; N >= 1."""
    if len(scores) != len(lengths):
        raise ValueError("scores and lengths must have the same length")
    n = len(scores)
    order = sorted(range(n), key=lambda i: lengths[i])
    length_rank = [0] * n
    for position, index in enumerate(order):
        previous = order[position - 1] if position else None
        same = previous is not None and lengths[previous] == lengths[index]
        length_rank[index] = length_rank[previous] if same else position
    denominator = max(n - 1, 1)
    return [
        score_weight * (1.0 - s / 5.0) + (1.0 - score_weight) * length_rank[i] / denominator
        for i, s in enumerate(scores)
    ]


def pacing_fraction(step: int, total_steps: int, start_fraction: float, pacing: str) -> float:
    """Competence c(p) in [start_fraction, 1] at ``step`` of ``total_steps`` (0-based)."""
    progress = 1.0 if total_steps <= 1 else min(max(step / (total_steps - 1), 0.0), 1.0)
    if pacing == "linear":
        return start_fraction + (1.0 - start_fraction) * progress
    if pacing == "root":
        return math.sqrt(start_fraction**2 + (1.0 - start_fraction**2) * progress)
    if pacing == "step":
        return start_fraction + (1.0 - start_fraction) * math.floor(4 * progress) / 4
    raise ValueError(f"unknown pacing {pacing!r}; choose linear, root or step")


def curriculum_order(
    difficulties: Sequence[float], batch_size: int, start_fraction: float, pacing: str, seed: int
) -> list[int]:
    """A permutation of ``range(N)``: batch b drawn from the easiest ``c(b)`` share, unused."""
    n = len(difficulties)
    by_difficulty = sorted(range(n), key=lambda i: (difficulties[i], i))
    rng = random.Random(seed)
    total_batches = math.ceil(n / batch_size)
    used = [False] * n
    order: list[int] = []
    for batch in range(total_batches):
        allowed = math.ceil(pacing_fraction(batch, total_batches, start_fraction, pacing) * n)
        pool = [i for i in by_difficulty[:allowed] if not used[i]]
        take = min(batch_size, n - len(order))
        chosen = rng.sample(pool, min(take, len(pool)))
        if len(chosen) < take:
            taken = set(chosen)
            spare = [i for i in by_difficulty if not used[i] and i not in taken]
            chosen += spare[: take - len(chosen)]
        for index in chosen:
            used[index] = True
        order += chosen
    return order
