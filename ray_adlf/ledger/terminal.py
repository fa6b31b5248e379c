"""``ray-adlf inspect``'s text: the ledger's analysis (``ledger.analysis``) as lines to print.

In order: what the ledger holds; each part's mean and std by round (at most ``MAX_ROUNDS``
rows, evenly spread, the first and last always); each part's quartiles in one round (``--round``,
default the last); each internal part's correlation with the reference and its trend; a
warning per reward-hacking sign; the critics' agreement; the best and worst samples by
``--sort`` (default the reward) in that round.
"""

from __future__ import annotations

import numpy as np

from ray_adlf.ledger import analysis
from ray_adlf.ledger.schema import clip_end, clip_start

MAX_ROUNDS = 12
CELL = 16
SHOWN_CHARS = 100


def label(column: str) -> str:
    """A column's name as shown: a part without its prefix."""
    return column.removeprefix(analysis.PART)


def signed(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:+.{digits}f}"


def one_line(text: str, keep_end: bool = False) -> str:
    """``text`` on one line, at most ``SHOWN_CHARS`` characters (its start, or its end)."""
    flat = " ".join(str(text).split())
    cut = clip_start if keep_end else clip_end
    return cut(flat, SHOWN_CHARS)


def spread_rounds(rounds: list[int], most: int) -> list[int]:
    """At most ``most`` of ``rounds``, evenly spread, the first and the last kept."""
    if len(rounds) <= most:
        return rounds
    picks = np.linspace(0, len(rounds) - 1, most).round().astype(int)
    return [rounds[i] for i in sorted(set(picks))]


def by_round_lines(data: dict, parts: list[str], rounds: np.ndarray) -> list[str]:
    stats = {p: {s.round: s for s in analysis.round_stats(rounds, data[p])} for p in parts}
    shown = spread_rounds(sorted(set(rounds.tolist())), MAX_ROUNDS)
    lines = ["round  " + "".join(f"{label(p)[: CELL - 1]:>{CELL}}" for p in parts)]
    for r in shown:
        cells = [f"{s.mean:.3f}±{s.std:.3f}" if (s := stats[p].get(r)) else "-" for p in parts]
        lines.append(f"{r:>5}  " + "".join(f"{cell:>{CELL}}" for cell in cells))
    return lines


def quartile_lines(data: dict, parts: list[str], rounds: np.ndarray, in_round: int) -> list[str]:
    lines = [f"{'':<18}{'min':>9}{'p25':>9}{'median':>9}{'p75':>9}{'max':>9}"]
    for part in parts:
        stats = analysis.round_stats(rounds[rounds == in_round], data[part][rounds == in_round])
        if stats:
            s = stats[0]
            figures = (s.min, s.q25, s.median, s.q75, s.max)
            lines.append(f"{label(part)[:17]:<18}" + "".join(f"{x:>9.3f}" for x in figures))
    return lines


def correlation_lines(data: dict) -> list[str]:
    reference = label(analysis.reference_part(data))
    found = analysis.correlations(data)
    if not found:
        return [f"no internal part to compare with {reference}"]
    lines = [
        f"internal parts against {reference}: Pearson r over the samples and over the round "
        "means; trend: first to last quarter of the rounds, in std of the part, and its t",
        f"{'':<14}{'r samples':>11}{'r rounds':>11}{'trend':>9}{'t':>8}",
    ]
    for c in found:
        change = None if c.trend is None else c.trend.change_sd
        t = None if c.trend is None else c.trend.t
        lines.append(
            f"{c.part[:13]:<14}{signed(c.over_samples):>11}{signed(c.over_rounds):>11}"
            f"{signed(change):>9}{signed(t, 1):>8}"
        )
    return lines


def warning_lines(data: dict, source: str) -> list[str]:
    lines = []
    for sign in analysis.hacking_signs(data):
        part, ref = sign.part_trend, sign.reference_trend
        reference = label(sign.reference)
        lines.append(
            f"warning: {sign.part} rises ({part.change_sd:+.2f} std, t {part.t:+.1f}, over "
            f"rounds {part.first_round}-{part.last_round}) while {reference} falls "
            f"({ref.change_sd:+.2f} std, t {ref.t:+.1f}): a sign of reward hacking; read its "
            f"samples: ray-adlf inspect {source} --sort {sign.part} --round {part.last_round}"
        )
    return lines


def critic_lines(data: dict, rounds: np.ndarray) -> list[str]:
    scores = analysis.critic_scores(data)
    if not scores:
        return []
    lines = [f"critics: {len(scores)} (their last debate round's scores, 0-5)"]
    agreement = data.get(analysis.PART + "debate_agreement")
    if agreement is not None:
        stats = analysis.round_stats(rounds, agreement)
        if stats:
            lines.append(
                f"  debate agreement (1 - 2 x spread), mean: {stats[0].mean:.3f} in round "
                f"{stats[0].round}, {stats[-1].mean:.3f} in round {stats[-1].round}"
            )
    for pair in analysis.critic_agreement(data):
        gap = "n/a" if pair.mean_abs_difference is None else f"{pair.mean_abs_difference:.2f}"
        lines.append(
            f"  critic {pair.first} vs critic {pair.second}: r {signed(pair.r)}, "
            f"mean |difference| {gap}"
        )
    return lines


def sample_lines(data: dict, rows: np.ndarray, column: str, parts: list[str]) -> list[str]:
    lines = []
    rounds = analysis.round_index(data)
    for row in rows:
        figures = ", ".join(
            f"{label(p)} {data[p][row]:.3f}" for p in dict.fromkeys([column, *parts])
        )
        where = f"round {rounds[row]} " if rounds[row] else ""
        sample = f"{where}sample {int(data['sample'][row])} ({data['prompt_id'][row]})"
        lines.append(f"  {sample}: {figures}")
        lines.append(f"    prompt:   {one_line(data['prompt'][row], keep_end=True)}")
        lines.append(f"    response: {one_line(data['response'][row])}")
    return lines


def inspect_lines(data: dict, source: str, sort: str, top: int, in_round: int | None) -> list[str]:
    """Everything ``ray-adlf inspect`` prints (module docstring); ``source``: the path read;
    the quartiles and samples are of round ``in_round`` (None: the last)."""
    column = analysis.column_name(data, sort)
    rounds = analysis.round_index(data)
    recorded = sorted(set(rounds.tolist()))
    if in_round is None:
        in_round = recorded[-1]
    elif in_round not in recorded:
        raise ValueError(
            f"--round {in_round}: the ledger holds rounds {recorded[0]}-{recorded[-1]}"
        )
    parts = [analysis.column_name(data, p) for p in analysis.shown_parts(data)]
    if recorded == [0]:
        span, shown = "a scored dataset (no rounds)", "the dataset"
    else:
        span = f"{len(recorded)} rounds ({recorded[0]}-{recorded[-1]})"
        shown = f"round {in_round}"
    best, worst = analysis.ranked(data, sort, top, in_round)
    return [
        f"ledger {source}: {span}, {len(rounds)} samples",
        "",
        "mean ± std by round",
        *by_round_lines(data, parts, rounds),
        "",
        f"distribution in {shown}",
        *quartile_lines(data, parts, rounds, in_round),
        "",
        *correlation_lines(data),
        *warning_lines(data, source),
        *critic_lines(data, rounds),
        "",
        f"top {len(best)} by {sort} in {shown}",
        *sample_lines(data, best, column, ["reward"]),
        f"bottom {len(worst)} by {sort} in {shown}",
        *sample_lines(data, worst, column, ["reward"]),
    ]
