"""The agent-debate protocol: rounds, reading scores, aggregation and agreement.

Round 1: each of K critics writes a short critique of the response and a score in [0, 5].
Round r > 1: each critic sees its own and the other critics' critiques and scores of round
r - 1 and writes a revised critique and score. ``run_debate`` drives the rounds for a batch;
who runs a critic (a local object, a Ray actor) is hidden behind the ``judge`` callable.

Reading a score (any model, even a random one): after a fixed ``Score:`` cue, take the model's
next-token probability mass ``m_s`` on each score token s = 0..5 and use the expected value
``E[s] = sum_s s * m_s / sum_s m_s`` (``expected_score``). When no probabilities are available
or their total is below ``MIN_SCORE_MASS``, the generated text after the cue is parsed for a
number in [0, 5] (``parse_score_text``); when that fails too the verdict is a parse failure
(``score = None``): counted, never an error.

Final score per response: each critic's last valid score (its latest round with one; critics
with none are left out), aggregated by ``mean``, ``median`` or ``trimmed_mean`` (the lowest
and highest dropped when there are at least 3), divided by 5 to lie in [0, 1]; 0.5 (neutral)
when no critic produced a score. ``spread`` = population std of those scores / 5 (in
[0, 0.5]); ``agreement = 1 - 2 * spread`` (1 = unanimous).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ray_adlf.data.records import Turn

SCORE_VALUES: tuple[int, ...] = (0, 1, 2, 3, 4, 5)
SCORE_MAX = 5.0
MIN_SCORE_MASS = 1e-6
NEUTRAL_SCORE = 0.5


@dataclass(frozen=True)
class Verdict:
    """One critic's output for one response in one round; ``score`` in [0, 5] or None.

    ``source``: ``"probs"`` (expected value over score tokens), ``"text"`` (parsed) or
    ``"failed"`` (``error`` says why).
    """

    critique: str
    score: float | None
    source: str
    error: str = ""


@dataclass(frozen=True)
class JudgeRequest:
    """What a critic judges: the response in its context, and (round > 1) the last round."""

    context: tuple[Turn, ...]
    response: str
    round: int
    own: Verdict | None = None
    peers: tuple[Verdict, ...] = ()


@dataclass
class DebateResult:
    """The debate over one response: final ``score`` in [0, 1], ``spread``, ``agreement``,
    ``valid`` critics, ``parse_failures`` over all rounds, and ``rounds[r][k]`` verdicts."""

    score: float
    spread: float
    agreement: float
    valid: int
    parse_failures: int
    rounds: list[list[Verdict]]


JudgeFunction = Callable[[list[list[JudgeRequest]]], list[list[Verdict]]]


def expected_score(masses: Sequence[float], min_mass: float = MIN_SCORE_MASS) -> float | None:
    """``sum_s s * m_s / sum_s m_s`` for masses [6] on scores 0..5; None if the total mass is
    below ``min_mass`` or not finite."""
    if len(masses) != len(SCORE_VALUES):
        raise ValueError(f"expected {len(SCORE_VALUES)} masses, got {len(masses)}")
    total = float(sum(masses))
    if not math.isfinite(total) or total < min_mass:
        return None
    return sum(s * float(m) for s, m in zip(SCORE_VALUES, masses)) / total


_LEADING_NUMBER = re.compile(r"^[\s*:]*(\d+(?:\.\d+)?)")


def parse_score_text(text: str) -> float | None:
    """The number that starts ``text`` (after spaces, ``*`` or ``:``) if it lies in [0, 5]."""
    match = _LEADING_NUMBER.match(text)
    if match is None:
        return None
    value = float(match.group(1))
    return value if 0.0 <= value <= SCORE_MAX else None


def aggregate_scores(scores: Sequence[float], method: str) -> float:
    """``mean``, ``median`` or ``trimmed_mean`` (drop min and max when n >= 3) of ``scores``."""
    if not scores:
        raise ValueError("no scores to aggregate")
    values = np.sort(np.asarray(scores, float))
    if method == "mean":
        return float(values.mean())
    if method == "median":
        return float(np.median(values))
    if method == "trimmed_mean":
        return float(values[1:-1].mean() if len(values) >= 3 else values.mean())
    raise ValueError(f"unknown debate aggregate {method!r}")


def score_spread(scores: Sequence[float]) -> float:
    """Population standard deviation of ``scores`` (0 for fewer than 2)."""
    return float(np.std(scores)) if len(scores) >= 2 else 0.0


def summarize_debate(rounds: list[list[Verdict]], method: str) -> DebateResult:
    """``rounds[r][k]`` verdicts of one response -> its ``DebateResult`` (module docstring)."""
    finals = []
    for critic in range(len(rounds[0])):
        scores = [rounds[r][critic].score for r in range(len(rounds))]
        valid = [s for s in scores if s is not None]
        if valid:
            finals.append(valid[-1])
    failures = sum(v.score is None for verdicts in rounds for v in verdicts)
    if not finals:
        return DebateResult(NEUTRAL_SCORE, 0.0, 1.0, 0, failures, rounds)
    spread = score_spread(finals) / SCORE_MAX
    score = aggregate_scores(finals, method) / SCORE_MAX
    return DebateResult(score, spread, 1.0 - 2.0 * spread, len(finals), failures, rounds)


def run_debate(
    contexts: Sequence[Sequence[Turn]],
    responses: Sequence[str],
    num_critics: int,
    rounds: int,
    method: str,
    judge: JudgeFunction,
) -> list[DebateResult]:
    """Debate every response: ``judge(requests[k][i]) -> verdicts[k][i]`` runs one round for
    all K critics over all N responses (critic k gets ``requests[k]``)."""
    if num_critics < 1 or rounds < 1:
        raise ValueError(f"need >= 1 critic and round, got {num_critics} and {rounds}")
    n = len(responses)
    history: list[list[list[Verdict]]] = [[] for _ in range(n)]  # [item][round][critic]
    for round_no in range(1, rounds + 1):
        requests = []
        for k in range(num_critics):
            row = []
            for i in range(n):
                last = history[i][-1] if history[i] else None
                row.append(
                    JudgeRequest(
                        context=tuple(contexts[i]),
                        response=responses[i],
                        round=round_no,
                        own=last[k] if last else None,
                        peers=tuple(v for j, v in enumerate(last) if j != k) if last else (),
                    )
                )
            requests.append(row)
        verdicts = judge(requests)
        if len(verdicts) != num_critics or any(len(v) != n for v in verdicts):
            raise ValueError(f"judge must return {num_critics} x {n} verdicts")
        for i in range(n):
            history[i].append([verdicts[k][i] for k in range(num_critics)])
    return [summarize_debate(history[i], method) for i in range(n)]


def debate_parts(results: Sequence[DebateResult]) -> dict[str, np.ndarray]:
    """Reward parts [N]: ``debate``, ``debate_spread``, ``debate_agreement``,
    ``debate_valid`` and ``debate_parse_failures``."""
    return {
        "debate": np.array([r.score for r in results], float),
        "debate_spread": np.array([r.spread for r in results], float),
        "debate_agreement": np.array([r.agreement for r in results], float),
        "debate_valid": np.array([r.valid for r in results], float),
        "debate_parse_failures": np.array([r.parse_failures for r in results], float),
    }
