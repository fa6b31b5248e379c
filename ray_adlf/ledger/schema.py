"""The ledger's rows: one per sample, the same columns for an RL run and ``ray-adlf score``.

Fixed columns (null where they do not apply: ``score`` has no round, policy or learner):

- ``round``, ``policy_version`` (the weights that sampled the row: learner rounds in them),
  ``sample`` (row in its round, or in the scored file), ``group`` (prompt group in the round);
- ``prompt_id`` (``file:line`` of the record, ``Record.record_id``), ``turn`` (index of the assistant turn answered),
  ``prompt`` (the context, one ``role: content`` line per turn, its start cut first),
  ``response``, ``response_tokens``, ``finish_reason`` (``stop`` / ``length``),
  ``human_score`` (``score``: the record's score, for its last assistant turn);
- ``alpha``, ``reward_combined`` (``(1 - alpha) * external + alpha * internal``, before any
  normalisation), ``reward`` (what the learner trained on: normalised, clipped, with DAPO's
  overlong shaping; ``score``: normalised and clipped);
- ``advantage`` (mean over the response tokens), ``kl`` (sum over the response tokens of the
  KL estimate; null without a reference), ``engine_logprob`` and ``learner_logprob`` (mean
  per response token of the engine's and the learner's old-policy logprobs).

Then one float column ``part_<name>`` per reward part (raw signals, ``z_<name>`` in
multi-objective mode, ``external_term``, ``internal``, ``overlong``, the debate's summary)
and, per critic k, ``critic<k>_score`` (its last round's score on 0-5, null when unreadable)
and ``critic<k>_critique``. Texts are cut to ``--ledger_max_chars`` characters, a cut marked
by a final (or, for the prompt, leading) ``…``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from ray_adlf.data.records import Turn
from ray_adlf.debate.protocol import DebateResult

FIXED = pa.schema(
    [
        ("round", pa.int32()),
        ("policy_version", pa.int32()),
        ("sample", pa.int32()),
        ("group", pa.int32()),
        ("prompt_id", pa.string()),
        ("turn", pa.int32()),
        ("prompt", pa.string()),
        ("response", pa.string()),
        ("response_tokens", pa.int32()),
        ("finish_reason", pa.string()),
        ("human_score", pa.float64()),
        ("alpha", pa.float64()),
        ("reward_combined", pa.float64()),
        ("reward", pa.float64()),
        ("advantage", pa.float64()),
        ("kl", pa.float64()),
        ("engine_logprob", pa.float64()),
        ("learner_logprob", pa.float64()),
    ]
)
PART = "part_"
# Parts that repeat a fixed column: the trained-on reward, the combination, the token count.
NOT_PARTS = {"reward": "reward", "reward_raw": "reward_combined", "response_tokens": None}
LEARNER_COLUMNS = ("advantage", "kl", "engine_logprob", "learner_logprob")
ELLIPSIS = "…"


def clip_end(text: str, max_chars: int) -> str:
    """``text`` whole, or its first ``max_chars - 1`` characters and ``…``."""
    return text if len(text) <= max_chars else text[: max_chars - 1] + ELLIPSIS


def clip_start(text: str, max_chars: int) -> str:
    """``text`` whole, or ``…`` and its last ``max_chars - 1`` characters."""
    return text if len(text) <= max_chars else ELLIPSIS + text[len(text) - max_chars + 1 :]


def context_text(context: Sequence[Turn]) -> str:
    """One ``role: content`` line per turn."""
    return "\n".join(f"{turn.role}: {turn.content}" for turn in context)


def critic_columns(debate: Sequence[DebateResult], max_chars: int) -> dict[str, list]:
    """``critic<k>_score`` / ``critic<k>_critique`` of each critic's last-round verdict."""
    columns: dict[str, list] = {}
    for k in range(len(debate[0].rounds[-1]) if debate else 0):
        verdicts = [result.rounds[-1][k] for result in debate]
        columns[f"critic{k}_score"] = [v.score for v in verdicts]
        columns[f"critic{k}_critique"] = [clip_end(v.critique, max_chars) for v in verdicts]
    return columns


def scored_columns(
    prompt_ids: Sequence[str],
    turns: Sequence[int],
    contexts: Sequence[Sequence[Turn]],
    responses: Sequence[str],
    response_tokens: Sequence[int],
    parts: dict[str, np.ndarray],
    rewards: np.ndarray,
    debate: Sequence[DebateResult] | None,
    alpha: float,
    max_chars: int,
) -> dict[str, list]:
    """The columns a scored batch of N samples fills, ``{column: [N]}``: its identity and
    texts, every reward part (``parts``, the combiner's), the ``rewards`` and the critics'."""
    n = len(responses)
    columns: dict[str, list] = {
        "prompt_id": list(prompt_ids),
        "turn": list(turns),
        "prompt": [clip_start(context_text(c), max_chars) for c in contexts],
        "response": [clip_end(r, max_chars) for r in responses],
        "response_tokens": list(response_tokens),
        "alpha": [alpha] * n,
        "reward_combined": [float(x) for x in parts["reward_raw"]],
        "reward": [float(x) for x in rewards],
    }
    for name, values in parts.items():
        if name not in NOT_PARTS:
            columns[PART + name] = [float(x) for x in values]
    columns.update(critic_columns(debate or [], max_chars))
    return columns


def select_rows(columns: dict[str, list], rows: Sequence[int]) -> dict[str, list]:
    """The ``rows`` of every column."""
    return {name: [values[i] for i in rows] for name, values in columns.items()}


def join_columns(parts: Sequence[dict[str, list]]) -> dict[str, list]:
    """The rows of ``parts`` (one column set) one after the other."""
    return {name: [v for part in parts for v in part[name]] for name in parts[0]}


def column_type(name: str) -> pa.DataType:
    """The Arrow type of a column (module docstring)."""
    if name in FIXED.names:
        return FIXED.field(name).type
    return pa.string() if name.endswith("_critique") else pa.float64()


def column_order(columns: dict[str, list]) -> list[str]:
    """The ledger's column order: every fixed column, then the others by name."""
    return [*FIXED.names, *sorted(set(columns) - set(FIXED.names))]


def ledger_table(columns: dict[str, list]) -> pa.Table:
    """The columns as a table in ``column_order`` and the ledger's types (a fixed column that
    ``columns`` lacks is null)."""
    n = len(next(iter(columns.values())))
    names = column_order(columns)
    arrays = [pa.array(columns.get(name, [None] * n), type=column_type(name)) for name in names]
    return pa.Table.from_arrays(arrays, names=names)
