"""The ledger's plots (matplotlib, Agg), as PNG bytes, for the ``inspect`` page and the report:

- ``part_means``: each reward part's mean by round, a band of one std around it;
- ``part_correlation``: each internal part's Pearson r with the reference (``analysis``),
  over the samples and over the per-round means;
- ``distributions``: box plots of the reward parts in one round;
- ``critic_agreement``: the debate's mean ``1 - 2 * spread`` by round.
"""

from __future__ import annotations

import io

import numpy as np

from ray_adlf.ledger import analysis


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(figure) -> bytes:
    plt = _pyplot()
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()


def reward_columns(data: dict[str, np.ndarray]) -> list[str]:
    """The columns of the shown parts that are rewards (not the learner's advantage or KL)."""
    parts = analysis.shown_parts(data)
    return [analysis.column_name(data, p) for p in parts if p not in ("advantage", "kl")]


def part_means(data: dict[str, np.ndarray]) -> bytes:
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7.0, 4.0))
    rounds = analysis.round_index(data)
    for column in reward_columns(data):
        stats = analysis.round_stats(rounds, data[column])
        x = [s.round for s in stats]
        mean, std = np.array([s.mean for s in stats]), np.array([s.std for s in stats])
        (line,) = axes.plot(x, mean, "-o", markersize=3, label=column.removeprefix(analysis.PART))
        axes.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.12)
    axes.set(title="reward parts by round (mean, ±1 std)", xlabel="round", ylabel="value")
    axes.xaxis.get_major_locator().set_params(integer=True)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    return _png(figure)


def part_correlation(data: dict[str, np.ndarray]) -> bytes:
    plt = _pyplot()
    found = analysis.correlations(data)
    reference = analysis.reference_part(data).removeprefix(analysis.PART)
    figure, axes = plt.subplots(figsize=(7.0, 4.0))
    x = np.arange(len(found))
    for offset, (label, attribute) in zip(
        (-0.2, 0.2), (("over samples", "over_samples"), ("over round means", "over_rounds"))
    ):
        values = [getattr(c, attribute) for c in found]
        heights = [np.nan if v is None else v for v in values]
        axes.bar(x + offset, heights, width=0.4, label=label)
    axes.axhline(0.0, color="black", linewidth=0.8)
    axes.set_xticks(x, [c.part for c in found])
    axes.set(title=f"internal parts: Pearson r with {reference}", ylabel="r", ylim=(-1.05, 1.05))
    axes.grid(alpha=0.3, axis="y")
    axes.legend(fontsize=8)
    return _png(figure)


def distributions(data: dict[str, np.ndarray], in_round: int) -> bytes:
    plt = _pyplot()
    rounds = analysis.round_index(data)
    columns = reward_columns(data)
    values = [data[c][(rounds == in_round) & ~np.isnan(data[c])] for c in columns]
    figure, axes = plt.subplots(figsize=(7.0, 4.0))
    axes.boxplot(values, tick_labels=[c.removeprefix(analysis.PART) for c in columns])
    axes.set(title=f"reward parts in round {in_round}", ylabel="value")
    axes.tick_params(axis="x", labelrotation=30, labelsize=8)
    axes.grid(alpha=0.3, axis="y")
    return _png(figure)


def critic_agreement(data: dict[str, np.ndarray]) -> bytes:
    plt = _pyplot()
    stats = analysis.round_stats(
        analysis.round_index(data), data[analysis.PART + "debate_agreement"]
    )
    figure, axes = plt.subplots(figsize=(7.0, 3.2))
    axes.plot([s.round for s in stats], [s.mean for s in stats], "-o", markersize=3)
    axes.set(
        title="critics' agreement by round (1 - 2 x spread)",
        xlabel="round",
        ylabel="agreement",
        ylim=(0.0, 1.05),
    )
    axes.xaxis.get_major_locator().set_params(integer=True)
    axes.grid(alpha=0.3)
    return _png(figure)
