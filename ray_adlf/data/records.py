"""Validated scored conversations: the in-memory form of one JSONL row.

A row ``{"conversation": [{"role", "content"}, ...], "meta_eval_score": x, "score_reason": s}``
becomes a :class:`Record` of :class:`Turn` s, with roles normalised by ``ROLE_ALIASES``
(``human`` -> ``user``, ``gpt`` -> ``assistant``). Records are built by
``ray_adlf.data.validate``, which guarantees the invariants listed on :class:`Record`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROLE_ALIASES: dict[str, str] = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
}


@dataclass(frozen=True, slots=True)
class Turn:
    """One message; ``role`` is ``"user"``, ``"assistant"`` or ``"system"``."""

    role: str
    content: str


@dataclass(frozen=True, slots=True)
class Record:
    """One scored conversation.

    Invariants (checked by ``validate.parse_line``): every content is a non-blank string; a
    system turn can only be first; a user turn comes before the first assistant turn; there is at
    least one assistant turn; ``score`` is a finite float in [0, 5]. ``source`` and ``line``
    (1-based) say where the row was read, for error messages.
    """

    conversation: tuple[Turn, ...]
    score: float
    score_reason: str | None
    source: str
    line: int

    def to_json_dict(self) -> dict[str, Any]:
        """The row in the input format (normalised roles); ``score_reason`` only when set."""
        row: dict[str, Any] = {
            "conversation": [{"role": t.role, "content": t.content} for t in self.conversation],
            "meta_eval_score": self.score,
        }
        if self.score_reason is not None:
            row["score_reason"] = self.score_reason
        return row

    @property
    def record_id(self) -> str:
        """``file:line`` where the row was read (the file's name, not its directory)."""
        return f"{Path(self.source).name}:{self.line}"


def split_last_assistant(record: Record) -> tuple[tuple[Turn, ...], Turn]:
    """Split at the last assistant turn: ``(turns before it, that turn)``.

    For a validated record the context holds at least one user turn. Turns after the last
    assistant turn (a trailing user question) are not returned.
    """
    for i in range(len(record.conversation) - 1, -1, -1):
        if record.conversation[i].role == "assistant":
            return record.conversation[:i], record.conversation[i]
    raise ValueError(f"{record.source}:{record.line}: no assistant turn")


def split_records(
    records: Sequence[Record], eval_fraction: float, seed: int
) -> tuple[list[Record], list[Record]]:
    """``(train, eval)``: a seeded shuffle, the first ``round(eval_fraction * N)`` held out."""
    shuffled = list(records)
    random.Random(seed).shuffle(shuffled)
    n_eval = round(eval_fraction * len(shuffled))
    if eval_fraction > 0 and len(shuffled) >= 2:
        n_eval = min(max(n_eval, 1), len(shuffled) - 1)
    return shuffled[n_eval:], shuffled[:n_eval]
