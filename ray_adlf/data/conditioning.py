"""Score conditioning for decision-transformer style training.

Training shows the model the human score of each conversation before it; at generation time
the same prefix carries the score we want (``--target_score``, default 5). The prefix is a line
at the start of the system turn (a system turn is inserted when there is none), so it works in
every token format and with every chat template that accepts a system turn::

    Target score: 4.5/5

Scores are rounded to the nearest 0.5 so the model sees a small, fixed set of conditions.
"""

from __future__ import annotations

from collections.abc import Sequence

from ray_adlf.data.records import Turn


def score_prefix(score: float) -> str:
    """The conditioning line for ``score`` in [0, 5], rounded to the nearest 0.5."""
    if not 0.0 <= score <= 5.0:
        raise ValueError(f"score must be in [0, 5], got {score}")
    return f"Target score: {round(score * 2) / 2:g}/5"


def condition_on_score(turns: Sequence[Turn], score: float) -> list[Turn]:
    """``turns`` with the score prefix as the first line of the (possibly new) system turn."""
    prefix = score_prefix(score)
    if turns and turns[0].role == "system":
        return [Turn("system", f"{prefix}\n{turns[0].content}"), *turns[1:]]
    return [Turn("system", prefix), *turns]
