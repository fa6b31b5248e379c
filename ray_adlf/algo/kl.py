"""Per-token KL estimators and the KL-coefficient controllers.

With ``d = logp - logp_ref`` (log-probabilities of the sampled tokens under the policy and the
reference), all three estimate ``KL(policy || ref)`` from samples of the policy (Schulman, 2020):

- k1 = ``d``                          unbiased, high variance, can be negative
- k2 = ``0.5 * d^2``                  biased, low variance, >= 0
- k3 = ``exp(-d) - (-d) - 1``         unbiased, low variance, >= 0

Numerics: padding positions of a logprob tensor hold junk (e.g. -1000). A log-ratio that reaches
``exp`` through such a position overflows to inf, and even when the forward selects it away the
backward multiplies a zero upstream gradient by ``exp(...) = inf`` and gives NaN. So every
log-ratio goes through ``masked_log_ratio`` first: set to 0 where ``mask`` is 0 (a selection, not
a product, so inf / NaN never leak) and, when it feeds ``exp``, clamped to
``[-LOG_RATIO_BOUND, LOG_RATIO_BOUND] = [-20, 20]`` (veRL's bound; ``exp(20) = 4.9e8`` is finite
in float16/bfloat16/float32 and the clamp has zero gradient outside it). k1 and k2 have no
``exp`` and are not clamped; all three return 0 at masked positions when a mask is given.

Controllers hold the penalty coefficient ``beta``:

- ``FixedKLController``: beta never changes.
- ``AdaptiveKLController`` (Ziegler et al. 2019): ``e = clip(KL / target - 1, -0.2, 0.2)``,
  ``beta <- beta * (1 + e * n_steps / horizon)``.

Both carry ``state_dict()`` / ``load_state_dict()`` (``{"beta": float}``) so beta survives
checkpoints.
"""

from __future__ import annotations

import torch

LOG_RATIO_BOUND = 20.0


def masked_log_ratio(
    logp: torch.Tensor,
    logp_other: torch.Tensor,
    mask: torch.Tensor | None = None,
    bound: float | None = LOG_RATIO_BOUND,
) -> torch.Tensor:
    """``clamp(logp - logp_other, -bound, bound)`` where ``mask`` is 1, exactly 0 where it is 0.

    logp, logp_other, mask: [B, T] (any equal shapes) -> [B, T]. ``mask=None``: every position is
    valid; ``bound=None``: no clamp. Masked positions get zero gradient even if they hold inf/NaN.
    """
    if logp.shape != logp_other.shape:
        raise ValueError(f"shapes differ: {tuple(logp.shape)} and {tuple(logp_other.shape)}")
    diff = logp - logp_other
    if mask is not None:
        if mask.shape != diff.shape:
            raise ValueError(f"mask shape {tuple(mask.shape)} != logp shape {tuple(diff.shape)}")
        diff = torch.where(mask.bool(), diff, torch.zeros_like(diff))
    if bound is not None:
        diff = torch.clamp(diff, -bound, bound)
    return diff


def kl_k1(
    logp: torch.Tensor, logp_ref: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """k1 = ``m * (logp - logp_ref)`` (no clamp). logp, logp_ref, mask: [B, T] -> [B, T]."""
    return masked_log_ratio(logp, logp_ref, mask, bound=None)


def kl_k2(
    logp: torch.Tensor, logp_ref: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """k2 = ``0.5 * (m * (logp - logp_ref))^2`` (no clamp). logp, logp_ref, mask: [B, T] -> [B, T]."""
    return 0.5 * masked_log_ratio(logp, logp_ref, mask, bound=None) ** 2


def kl_k3(
    logp: torch.Tensor, logp_ref: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """k3 = ``exp(x) - x - 1`` with ``x = clamp(m * (logp_ref - logp), -20, 20)``.

    logp, logp_ref, mask: [B, T] -> [B, T]; 0 at masked positions, finite gradients everywhere.
    """
    log_ratio = masked_log_ratio(logp_ref, logp, mask)
    return torch.exp(log_ratio) - log_ratio - 1


def kl_estimate(
    logp: torch.Tensor,
    logp_ref: torch.Tensor,
    estimator: str,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """The per-token KL estimate named by ``estimator`` ("k1", "k2" or "k3"). [B, T] -> [B, T].

    ``mask`` [B, T] (optional): masked positions are 0 and never reach ``exp`` (module docstring).
    """
    if estimator == "k1":
        return kl_k1(logp, logp_ref, mask)
    if estimator == "k2":
        return kl_k2(logp, logp_ref, mask)
    if estimator == "k3":
        return kl_k3(logp, logp_ref, mask)
    raise ValueError(f"unknown KL estimator {estimator!r}; expected 'k1', 'k2' or 'k3'")


class FixedKLController:
    """A constant KL coefficient: ``update`` returns ``beta`` unchanged."""

    def __init__(self, beta: float) -> None:
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        self.beta = float(beta)

    def update(self, current_kl: float, n_steps: int) -> float:
        """Return ``beta`` (ignores the measured KL)."""
        return self.beta

    def state_dict(self) -> dict[str, float]:
        return {"beta": self.beta}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.beta = float(state["beta"])


class AdaptiveKLController:
    """Ziegler et al. 2019: steer the measured KL toward ``target`` over ``horizon`` steps.

    ``e = clip(current_kl / target - 1, -0.2, 0.2)``; ``beta <- beta * (1 + e * n_steps / horizon)``.
    """

    def __init__(self, init_beta: float, target: float, horizon: float) -> None:
        if init_beta < 0:
            raise ValueError(f"init_beta must be >= 0, got {init_beta}")
        if target <= 0:
            raise ValueError(f"target must be > 0, got {target}")
        if horizon <= 0:
            raise ValueError(f"horizon must be > 0, got {horizon}")
        self.beta = float(init_beta)
        self.target = float(target)
        self.horizon = float(horizon)

    def update(self, current_kl: float, n_steps: int) -> float:
        """Apply one step of the rule for ``n_steps`` samples (or tokens) and return the new beta."""
        if n_steps < 0:
            raise ValueError(f"n_steps must be >= 0, got {n_steps}")
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.beta *= 1.0 + error * n_steps / self.horizon
        return self.beta

    def state_dict(self) -> dict[str, float]:
        return {"beta": self.beta}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.beta = float(state["beta"])
