"""Per-token KL estimators and the KL-coefficient controllers.

With ``d = logp - logp_ref`` (log-probabilities of the sampled tokens under the policy and the
reference), all three estimate ``KL(policy || ref)`` from samples of the policy (Schulman, 2020):

- k1 = ``d``                          unbiased, high variance, can be negative
- k2 = ``0.5 * d^2``                  biased, low variance, >= 0
- k3 = ``exp(-d) - (-d) - 1``         unbiased, low variance, >= 0

Controllers hold the penalty coefficient ``beta``:

- ``FixedKLController``: beta never changes.
- ``AdaptiveKLController`` (Ziegler et al. 2019): ``e = clip(KL / target - 1, -0.2, 0.2)``,
  ``beta <- beta * (1 + e * n_steps / horizon)``.

Both carry ``state_dict()`` / ``load_state_dict()`` (``{"beta": float}``) so beta survives
checkpoints.
"""

from __future__ import annotations

import torch


def kl_k1(logp: torch.Tensor, logp_ref: torch.Tensor) -> torch.Tensor:
    """k1 = ``logp - logp_ref``. logp, logp_ref: [B, T] -> [B, T]."""
    return logp - logp_ref


def kl_k2(logp: torch.Tensor, logp_ref: torch.Tensor) -> torch.Tensor:
    """k2 = ``0.5 * (logp - logp_ref)^2``. logp, logp_ref: [B, T] -> [B, T]."""
    return 0.5 * (logp - logp_ref) ** 2


def kl_k3(logp: torch.Tensor, logp_ref: torch.Tensor) -> torch.Tensor:
    """k3 = ``exp(logp_ref - logp) - (logp_ref - logp) - 1``. logp, logp_ref: [B, T] -> [B, T]."""
    log_ratio = logp_ref - logp
    return torch.exp(log_ratio) - log_ratio - 1


def kl_estimate(logp: torch.Tensor, logp_ref: torch.Tensor, estimator: str) -> torch.Tensor:
    """The per-token KL estimate named by ``estimator`` ("k1", "k2" or "k3"). [B, T] -> [B, T]."""
    if estimator == "k1":
        return kl_k1(logp, logp_ref)
    if estimator == "k2":
        return kl_k2(logp, logp_ref)
    if estimator == "k3":
        return kl_k3(logp, logp_ref)
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
