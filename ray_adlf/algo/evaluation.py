"""Summary statistics of a held-out evaluation over N prompts.

- ``mean_and_se(x)``: ``mean = sum(x) / N`` and the standard error of that mean,
  ``se = s / sqrt(N)`` with ``s`` the sample standard deviation (``N - 1`` in the denominator);
  ``se = 0`` for N = 1.
- ``paired_difference(after, before)``: the same two numbers for ``d_i = after_i - before_i``
  over the same prompts. Pairing removes the prompt-to-prompt spread that both evaluations
  share, so the difference is judged against its own standard error, which is what "beats the
  SFT policy by more than two standard errors" asks: ``mean(d) > 2 * se(d)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def mean_and_se(values: Sequence[float]) -> tuple[float, float]:
    """``(mean, standard error of the mean)`` of ``values`` [N], N >= 1."""
    n = len(values)
    if n == 0:
        raise ValueError("no values")
    mean = math.fsum(values) / n
    if n == 1:
        return mean, 0.0
    variance = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(variance / n)


def paired_difference(after: Sequence[float], before: Sequence[float]) -> tuple[float, float]:
    """``mean_and_se(after_i - before_i)``; ``after`` and ``before`` [N] score the same prompts."""
    if len(after) != len(before):
        raise ValueError(f"{len(after)} scores after, {len(before)} before: not paired")
    return mean_and_se([a - b for a, b in zip(after, before)])
