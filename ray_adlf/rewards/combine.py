"""The ADLF reward: combine the reward parts of a batch into one reward per sample.

Parts are ``[N]`` arrays keyed by name: ``external`` (the reward model's predicted human score
mapped to [0, 1]) and the internal signals (``rewards.catalog.INTERNAL_SIGNALS``) present.

- Plain mode: ``internal = mean of the present internal signals``;
  ``reward = (1 - alpha) * external + alpha * internal``.
- Multi-objective mode: every present objective ``k`` is normalised first, ``z_k``:
  ``running``: ``z = (x - mu_k) / sqrt(var_k + eps)`` with running statistics updated with the
  batch before normalising; ``rank``: ``z`` = the batch's standardised ranks (average ranks for
  ties, ``(rank - (N - 1) / 2) / sqrt((N^2 - 1) / 12)``, 0 for N = 1). Then
  ``external = w_quality * z_external``, ``internal = sum_k w_k z_k`` over the internal signals,
  ``reward = (1 - alpha) * external + alpha * internal``. Each ``z`` has unit scale, so a weight
  is the reward's change per standard deviation of its objective: it means what it says.
- Then, optionally, ``reward <- (reward - mu_r) / sqrt(var_r + eps)`` (``normalize_rewards``,
  running statistics of the final reward) and ``reward <- clip(reward, -c, c)`` (``c > 0``).

alpha = 1 needs no ``external``; alpha = 0 needs no internal signal. The running statistics
(per objective and of the final reward) are in ``state_dict()`` for checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ray_adlf.debate.protocol import DebateResult
from ray_adlf.rewards.catalog import INTERNAL_SIGNALS


def adlf_reward(external: np.ndarray, internal: np.ndarray, alpha: float) -> np.ndarray:
    """``(1 - alpha) * external + alpha * internal``. external, internal: [N] -> [N]."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    return (1.0 - alpha) * np.asarray(external, float) + alpha * np.asarray(internal, float)


def average_ranks(x: np.ndarray) -> np.ndarray:
    """0-based ranks of ``x`` [N], ties sharing their average rank."""
    x = np.asarray(x, float)
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x), dtype=float)
    for value in np.unique(x):
        tied = x == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def rank_standardize(x: np.ndarray) -> np.ndarray:
    """Standardised average ranks: ``(rank - (N - 1) / 2) / sqrt((N^2 - 1) / 12)``. [N] -> [N]."""
    n = len(x)
    if n < 2:
        return np.zeros(n)
    return (average_ranks(x) - (n - 1) / 2) / np.sqrt((n * n - 1) / 12)


class RunningMeanStd:
    """Running mean and (biased) variance over every value seen, merged batch by batch
    (Chan et al.): ``normalize(x) = (x - mean) / sqrt(var + eps)``."""

    def __init__(self, eps: float = 1e-8) -> None:
        self.count = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.eps = eps

    @property
    def var(self) -> float:
        return self.m2 / self.count if self.count else 0.0

    def update(self, x: np.ndarray) -> None:
        """Merge a batch ``x`` [N] into the statistics."""
        x = np.asarray(x, float)
        if x.size == 0:
            return
        n, mean = x.size, float(x.mean())
        m2 = float(((x - mean) ** 2).sum())
        total = self.count + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.count * n / total
        self.count = total

    def normalize(self, x: np.ndarray) -> np.ndarray:
        """``(x - mean) / sqrt(var + eps)``. [N] -> [N]."""
        return (np.asarray(x, float) - self.mean) / np.sqrt(self.var + self.eps)

    def state_dict(self) -> dict[str, float]:
        return {"count": self.count, "mean": self.mean, "m2": self.m2}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.count, self.mean, self.m2 = int(state["count"]), state["mean"], state["m2"]


@dataclass
class RewardBatch:
    """Rewards of N samples: ``rewards`` [N], every part [N] (raw signals, ``z_<name>`` in
    multi-objective mode, ``external_term``, ``internal``, ``reward_raw``), debate transcripts,
    and seconds spent per phase (``debate_s`` when the critics ran)."""

    rewards: np.ndarray
    parts: dict[str, np.ndarray]
    debate: list[DebateResult] | None = field(default=None)
    timings: dict[str, float] = field(default_factory=dict)

    def means(self) -> dict[str, float]:
        """Batch mean of every part and of the reward, for logging and Tune."""
        out = {name: float(np.mean(values)) for name, values in self.parts.items()}
        out["reward"] = float(np.mean(self.rewards))
        return out


class RewardCombiner:
    """Applies the module's formula to batches and keeps its running statistics.

    ``weights`` maps objective name (``external`` = the quality weight, and the names in
    ``INTERNAL_SIGNALS``) to its multi-objective weight.
    """

    def __init__(
        self,
        alpha: float,
        multi_objective: bool,
        weights: dict[str, float],
        objective_normalization: str,
        normalize_rewards: bool,
        reward_clip: float,
    ) -> None:
        if objective_normalization not in ("running", "rank"):
            raise ValueError(f"unknown objective normalization {objective_normalization!r}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.alpha = alpha
        self.multi_objective = multi_objective
        self.weights = dict(weights)
        self.objective_normalization = objective_normalization
        self.normalize_rewards = normalize_rewards
        self.reward_clip = reward_clip
        self.objective_stats: dict[str, RunningMeanStd] = {}
        self.reward_stats = RunningMeanStd()

    def _normalize(self, name: str, x: np.ndarray) -> np.ndarray:
        if self.objective_normalization == "rank":
            return rank_standardize(x)
        stats = self.objective_stats.setdefault(name, RunningMeanStd())
        stats.update(x)
        return stats.normalize(x)

    def combine(self, parts: dict[str, np.ndarray]) -> RewardBatch:
        """Rewards [N] and parts (inputs plus the intermediate terms) for one batch."""
        internal_names = [name for name in INTERNAL_SIGNALS if name in parts]
        n = len(next(iter(parts.values()))) if parts else 0
        if self.alpha < 1.0 and "external" not in parts:
            raise ValueError("alpha < 1 needs the 'external' part (a reward model)")
        if self.alpha > 0.0 and not internal_names:
            raise ValueError("alpha > 0 needs at least one internal signal")
        out = {name: np.asarray(values, float) for name, values in parts.items()}
        external, internal = np.zeros(n), np.zeros(n)
        if self.multi_objective:
            for name in (["external"] if "external" in out else []) + internal_names:
                out[f"z_{name}"] = self._normalize(name, out[name])
            if "external" in out:
                external = self.weights["external"] * out["z_external"]
            for name in internal_names:
                internal = internal + self.weights[name] * out[f"z_{name}"]
        else:
            if "external" in out:
                external = out["external"]
            if internal_names:
                internal = np.mean([out[name] for name in internal_names], axis=0)
        reward = adlf_reward(external, internal, self.alpha)
        out.update(external_term=external, internal=internal, reward_raw=reward)
        if self.normalize_rewards:
            self.reward_stats.update(reward)
            reward = self.reward_stats.normalize(reward)
        if self.reward_clip > 0:
            reward = np.clip(reward, -self.reward_clip, self.reward_clip)
        return RewardBatch(rewards=reward, parts=out)

    def state_dict(self) -> dict:
        return {
            "objectives": {k: v.state_dict() for k, v in self.objective_stats.items()},
            "reward": self.reward_stats.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.objective_stats = {}
        for name, stats in state["objectives"].items():
            self.objective_stats[name] = RunningMeanStd()
            self.objective_stats[name].load_state_dict(stats)
        self.reward_stats.load_state_dict(state["reward"])
