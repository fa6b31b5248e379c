"""The self-critique format: how a model is asked for, and writes, a critique of a reply.

A critique follows the conversation as one more exchange: a user turn with ``CRITIQUE_REQUEST``,
then an assistant turn holding the score and the reason::

    user:       Critique your last reply: give it a score from 0 to 5 and the reason.
    assistant:  Score: 4.5/5
                Reason: Correct, complete and polite.

The score is printed with at most one decimal (``Score: 4/5``, ``Score: 3.5/5``). The line
``Score: X/5`` is the cue that debate critics use too; ``parse_critique`` reads it back from
any text (the first match counts), with or without a reason line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ray_adlf.data.records import Turn

CRITIQUE_REQUEST = "Critique your last reply: give it a score from 0 to 5 and the reason."
SCORE_CUE = "Score:"
REASON_CUE = "Reason:"
_SCORE_PATTERN = re.compile(r"Score:\s*([0-9]+(?:\.[0-9]+)?)\s*/\s*5")
_REASON_PATTERN = re.compile(r"Reason:[ \t]*(.+)")


def format_critique(score: float, reason: str) -> str:
    """``"Score: {score}/5\\nReason: {reason}"`` with the score rounded to one decimal."""
    if not 0.0 <= score <= 5.0:
        raise ValueError(f"score must be in [0, 5], got {score}")
    return f"{SCORE_CUE} {round(score, 1):g}/5\n{REASON_CUE} {reason.strip()}"


def parse_critique(text: str) -> tuple[float, str | None] | None:
    """``(score, reason)`` from a critique, ``reason`` None without a reason line.

    None when the text has no ``Score: X/5`` with X in [0, 5].
    """
    score_match = _SCORE_PATTERN.search(text)
    if score_match is None or not 0.0 <= float(score_match.group(1)) <= 5.0:
        return None
    reason_match = _REASON_PATTERN.search(text, score_match.end())
    reason = reason_match.group(1).strip() if reason_match else None
    return float(score_match.group(1)), reason or None


def critique_conversation(turns: Sequence[Turn], score: float, reason: str) -> list[Turn]:
    """``turns`` followed by the critique request and the critique (the trained answer)."""
    return [
        *turns,
        Turn("user", CRITIQUE_REQUEST),
        Turn("assistant", format_critique(score, reason)),
    ]
