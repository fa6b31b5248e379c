"""Dataset summary for ``ray-adlf data stats``.

Rows, turns (total, per row, per role), a histogram of ``meta_eval_score`` over the bins
[0,1), [1,2), [2,3), [3,4), [4,5] (5 falls in the last), token-length percentiles of the
rendered conversations (nearest-rank: the smallest length with at least p% of rows at or
below it) for a given tokenizer and format, and the count of rows with a ``score_reason``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from ray_adlf.data.formats import prepare_tokenizer, render_conversation
from ray_adlf.data.records import Record

PERCENTILES = (50, 90, 95, 99, 100)


@dataclass(frozen=True)
class DatasetStats:
    rows: int
    turns: int
    turns_by_role: dict[str, int]
    max_turns: int
    score_histogram: list[int]
    mean_score: float
    with_reason: int
    token_percentiles: dict[int, int]


def nearest_rank_percentile(sorted_values: Sequence[int], percent: float) -> int:
    """Smallest value with at least ``percent``% of values <= it; values sorted ascending."""
    rank = max(1, math.ceil(percent / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def dataset_stats(records: Sequence[Record], tokenizer, token_format: str) -> DatasetStats:
    """Summarise ``records``; token lengths use ``tokenizer`` in ``token_format``."""
    prepare_tokenizer(tokenizer, token_format)
    roles = Counter(turn.role for record in records for turn in record.conversation)
    histogram = [0] * 5
    for record in records:
        histogram[min(int(record.score), 4)] += 1
    lengths = sorted(
        len(
            tokenizer(
                render_conversation(r.conversation, tokenizer, token_format)[0],
                add_special_tokens=False,
            )["input_ids"]
        )
        for r in records
    )
    return DatasetStats(
        rows=len(records),
        turns=sum(roles.values()),
        turns_by_role=dict(roles),
        max_turns=max((len(r.conversation) for r in records), default=0),
        score_histogram=histogram,
        mean_score=sum(r.score for r in records) / max(len(records), 1),
        with_reason=sum(r.score_reason is not None for r in records),
        token_percentiles={p: nearest_rank_percentile(lengths, p) for p in PERCENTILES}
        if lengths
        else {},
    )


def format_stats(stats: DatasetStats) -> list[str]:
    """Human-readable lines for the CLI."""
    width = max(stats.score_histogram, default=0) or 1
    lines = [
        f"rows: {stats.rows}",
        f"turns: {stats.turns} ({stats.turns / max(stats.rows, 1):.2f} per row, "
        f"max {stats.max_turns}; "
        + ", ".join(f"{role} {n}" for role, n in sorted(stats.turns_by_role.items()))
        + ")",
        f"rows with score_reason: {stats.with_reason} "
        f"({100 * stats.with_reason / max(stats.rows, 1):.1f}%)",
        f"meta_eval_score: mean {stats.mean_score:.2f}",
    ]
    for low, count in enumerate(stats.score_histogram):
        label = f"[{low},{low + 1}{']' if low == 4 else ')'}"
        lines.append(f"  {label:6} {count:7d} {'#' * round(40 * count / width)}")
    lines.append(
        "tokens per conversation: "
        + ", ".join(f"p{p} {n}" for p, n in stats.token_percentiles.items())
    )
    return lines
