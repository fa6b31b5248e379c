"""What ``ray-adlf inspect`` computes from a ledger: plain NumPy over its columns.

``columns(table)`` turns the ledger into ``{name: [N] array}`` (numbers as float with NaN
for null, texts as objects). Over the samples of each round, per part:

- ``round_stats``: count, mean, std (population), min, quartiles, max;
- ``trend``: the change of the mean from the first quarter of the recorded rounds to the
  last quarter (``window`` rounds each, at least 1), in units of the part's std over every
  sample (``change_sd``), and Welch's t of that difference over the windows' samples (``t``):
  a window's mean, not a line, so a part that moves early and then holds still counts;
- ``correlations``: Pearson r of each internal part with the reference, over the samples and
  over the per-round means. The reference is the external reward (the reward model), or
  without one (``--adlf_alpha 1``) the reward the learner trained on;
- ``hacking_signs``: the internal signals (not their combination) that rise while the reference falls, both trends
  clear (``|change_sd| >= TREND_SD`` and ``|t| >= TREND_T``, over at least ``TREND_ROUNDS``
  rounds): the policy is earning that part at the expense of what the
  reward model (standing in for people) rates, for example longer answers that it rates worse;
- ``critic_agreement``: for every pair of critics, the Pearson r and the mean absolute
  difference of their scores (0-5) over the samples both scored, and the debate's own
  ``1 - 2 * spread`` per round;
- ``ranked``: the samples with the highest and lowest value of a part, in a round or all.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pyarrow as pa

from ray_adlf.ledger.schema import PART
from ray_adlf.rewards.catalog import INTERNAL_SIGNALS

TREND_ROUNDS = 3
TREND_SD = 0.25
TREND_T = 3.0
# Parts that are bookkeeping, not a distribution worth reading (failures, counts, copies).
HIDDEN_PARTS = ("external_score", "external_term", "debate_valid", "debate_parse_failures")
CORRELATED = (*INTERNAL_SIGNALS, "internal")


def columns(table: pa.Table) -> dict[str, np.ndarray]:
    """The ledger as arrays: numbers as float64 (null -> NaN), the rest as objects."""
    out = {}
    for name in table.column_names:
        column = table.column(name)
        if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
            out[name] = np.array(column.cast(pa.float64()).to_pylist(), dtype=float)
        else:
            out[name] = np.array(column.to_pylist(), dtype=object)
    return out


def column_name(data: dict[str, np.ndarray], part: str) -> str:
    """The column of ``part``: a reward part by name (``length``), or any numeric column."""
    for name in (part, PART + part):
        if name in data and data[name].dtype == float:
            return name
    raise KeyError(part)


def shown_parts(data: dict[str, np.ndarray]) -> list[str]:
    """The parts a reader looks at, in this order: the rewards, every part the run has (but
    the bookkeeping ones), then the learner's advantage and KL. Short names (no prefix)."""
    parts = [
        name[len(PART) :]
        for name in sorted(data)
        if name.startswith(PART)
        and not name.endswith("_failed")
        and not name.startswith(PART + "z_")
        and name[len(PART) :] not in HIDDEN_PARTS
    ]
    learner = [name for name in ("advantage", "kl") if not np.all(np.isnan(data[name]))]
    return ["reward", "reward_combined", *parts, *learner]


def round_index(data: dict[str, np.ndarray]) -> np.ndarray:
    """Each row's round (0 for rows without one: a scored dataset)."""
    rounds = data["round"]
    return np.where(np.isnan(rounds), 0, rounds).astype(int)


@dataclass(frozen=True)
class RoundStats:
    round: int
    count: int
    mean: float
    std: float
    min: float
    q25: float
    median: float
    q75: float
    max: float


def round_stats(rounds: np.ndarray, values: np.ndarray) -> list[RoundStats]:
    """The distribution of ``values`` in each round (NaN left out; rounds without a value are
    skipped). rounds, values: [N]."""
    out = []
    for r in np.unique(rounds):
        x = values[(rounds == r) & ~np.isnan(values)]
        if x.size:
            q = np.quantile(x, [0.0, 0.25, 0.5, 0.75, 1.0])
            out.append(RoundStats(int(r), x.size, float(x.mean()), float(x.std()), *map(float, q)))
    return out


def pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    """Pearson r over the pairs where both are numbers; None for fewer than 3 pairs or a
    constant side."""
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    if x.size < 3 or x.std() == 0 or y.std() == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])


@dataclass(frozen=True)
class Trend:
    """The change of a part from its first rounds to its last (module docstring)."""

    first_round: int
    last_round: int
    window: int
    change_sd: float
    t: float

    def rises(self) -> bool:
        return self._clear() and self.change_sd > 0

    def falls(self) -> bool:
        return self._clear() and self.change_sd < 0

    def _clear(self) -> bool:
        return abs(self.change_sd) >= TREND_SD and abs(self.t) >= TREND_T


def trend(rounds: np.ndarray, values: np.ndarray) -> Trend | None:
    """The trend of ``values`` (module docstring); None over fewer than ``TREND_ROUNDS``
    rounds or for a constant part. rounds, values: [N]."""
    keep = ~np.isnan(values)
    rounds, values = rounds[keep], values[keep]
    recorded = np.unique(rounds)
    sd = float(values.std()) if values.size else 0.0
    if recorded.size < TREND_ROUNDS or sd == 0:
        return None
    window = max(1, recorded.size // 4)
    early = values[np.isin(rounds, recorded[:window])]
    late = values[np.isin(rounds, recorded[-window:])]
    difference = float(late.mean() - early.mean())
    variance = sum(x.var(ddof=1) / x.size for x in (early, late) if x.size > 1)
    t = difference / np.sqrt(variance) if variance > 0 else np.copysign(np.inf, difference)
    return Trend(int(recorded[0]), int(recorded[-1]), window, difference / sd, float(t))


def reference_part(data: dict[str, np.ndarray]) -> str:
    """The column the internal parts are compared with: the external reward, else the reward."""
    external = PART + "external"
    return external if external in data and not np.all(np.isnan(data[external])) else "reward"


@dataclass(frozen=True)
class Correlation:
    part: str
    over_samples: float | None
    over_rounds: float | None
    trend: Trend | None


def round_means(rounds: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(rounds, means)`` of the rounds where ``values`` has numbers."""
    stats = round_stats(rounds, values)
    return np.array([s.round for s in stats]), np.array([s.mean for s in stats])


def correlations(data: dict[str, np.ndarray]) -> list[Correlation]:
    """Each internal part present against ``reference_part`` (module docstring)."""
    rounds, reference = round_index(data), data[reference_part(data)]
    ref_rounds, ref_means = round_means(rounds, reference)
    out = []
    for part in CORRELATED:
        if PART + part not in data or np.all(np.isnan(data[PART + part])):
            continue
        values = data[PART + part]
        part_rounds, means = round_means(rounds, values)
        common = np.intersect1d(part_rounds, ref_rounds)
        over_rounds = None
        if common.size >= TREND_ROUNDS:
            over_rounds = pearson(
                means[np.isin(part_rounds, common)], ref_means[np.isin(ref_rounds, common)]
            )
        out.append(
            Correlation(part, pearson(values, reference), over_rounds, trend(rounds, values))
        )
    return out


@dataclass(frozen=True)
class HackingSign:
    part: str
    part_trend: Trend
    reference: str
    reference_trend: Trend


def hacking_signs(data: dict[str, np.ndarray]) -> list[HackingSign]:
    """The internal parts that rise while the reference falls (module docstring)."""
    reference = reference_part(data)
    reference_trend = trend(round_index(data), data[reference])
    if reference_trend is None or not reference_trend.falls():
        return []
    return [
        HackingSign(c.part, c.trend, reference, reference_trend)
        for c in correlations(data)
        if c.part in INTERNAL_SIGNALS and c.trend is not None and c.trend.rises()
    ]


@dataclass(frozen=True)
class CriticPair:
    first: int
    second: int
    r: float | None
    mean_abs_difference: float | None


def critic_scores(data: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Each critic's scores (0-5, NaN where unreadable), by critic."""
    count = sum(name.startswith("critic") and name.endswith("_score") for name in data)
    return [data[f"critic{k}_score"] for k in range(count)]


def critic_agreement(data: dict[str, np.ndarray]) -> list[CriticPair]:
    """Every pair of critics: r and mean |difference| over the samples both scored."""
    pairs = []
    scores = critic_scores(data)
    for i, j in combinations(range(len(scores)), 2):
        both = ~(np.isnan(scores[i]) | np.isnan(scores[j]))
        gap = float(np.abs(scores[i][both] - scores[j][both]).mean()) if both.any() else None
        pairs.append(CriticPair(i, j, pearson(scores[i], scores[j]), gap))
    return pairs


def ranked(
    data: dict[str, np.ndarray], part: str, top: int, in_round: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the ``top`` highest and lowest values of ``part`` (in round
    ``in_round``, or over all rounds), best first and worst first; NaN rows left out."""
    values = data[column_name(data, part)]
    rows = np.flatnonzero(~np.isnan(values))
    if in_round is not None:
        rows = rows[round_index(data)[rows] == in_round]
    order = rows[np.argsort(values[rows], kind="stable")]
    return order[::-1][:top], order[:top]
