"""Every text the critique agents see. Plain completion prompts (no chat template), so the same
templates work for a local causal LM and for an OpenAI-compatible ``/completions`` endpoint.

A critic writes its critique after ``Critique:``; the caller then appends ``SCORE_CUE`` and reads
the score as the next token (a digit 0-5). Long texts are cut to a few hundred characters so
prompts stay within small models' context windows.
"""

from __future__ import annotations

from collections.abc import Sequence

from ray_adlf.data.critique import SCORE_CUE as CRITIQUE_SCORE_CUE
from ray_adlf.data.records import Turn

PERSONAS: tuple[str, ...] = (
    "You are a strict critic who checks that every fact in the response is correct.",
    "You are a critic who checks that the response answers exactly what was asked.",
    "You are a critic who values clear, complete and polite responses.",
    "You are a critic who checks that the response agrees with the conversation so far.",
)

FIRST_ROUND = """{persona}
Read the conversation and judge the assistant's response.

Conversation:
{conversation}

Response to judge:
{response}

Write a one-sentence critique, then a score from 0 (useless or wrong) to 5 (excellent).
Critique:"""

REVISION_ROUND = """{persona}
Read the conversation and judge the assistant's response.

Conversation:
{conversation}

Response to judge:
{response}

In round {previous_round} you wrote: {own_critique} (score {own_score})
The other critics wrote:
{peers}

Considering their arguments, write a revised one-sentence critique, then a score from 0 to 5.
Critique:"""

PEER_LINE = "- {critique} (score {score})"
NO_CRITIQUE = "(no critique)"
NO_SCORE = "none"
SCORE_CUE = "\n" + CRITIQUE_SCORE_CUE  # "Score:", as in the self-critique format
ROLE_NAMES = {"system": "System", "user": "User", "assistant": "Assistant"}
MAX_TURN_CHARS = 400
MAX_CRITIQUE_CHARS = 240


def _cut(text: str, limit: int) -> str:
    """Whitespace collapsed, unprintable characters dropped, at most ``limit`` characters."""
    text = " ".join("".join(ch for ch in text if ch.isprintable() or ch.isspace()).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def format_conversation(context: Sequence[Turn]) -> str:
    """``Role: content`` lines, each content cut to ``MAX_TURN_CHARS``."""
    return "\n".join(f"{ROLE_NAMES[t.role]}: {_cut(t.content, MAX_TURN_CHARS)}" for t in context)


def format_score(score: float | None) -> str:
    return NO_SCORE if score is None else f"{score:.1f}"


def first_round_prompt(persona: int, context: Sequence[Turn], response: str) -> str:
    return FIRST_ROUND.format(
        persona=PERSONAS[persona % len(PERSONAS)],
        conversation=format_conversation(context),
        response=_cut(response, MAX_TURN_CHARS) or "(empty)",
    )


def revision_prompt(
    persona: int,
    context: Sequence[Turn],
    response: str,
    previous_round: int,
    own: tuple[str, float | None],
    peers: Sequence[tuple[str, float | None]],
) -> str:
    """Round > 1: the critic's own previous critique and score and its peers' ones."""
    peer_lines = [
        PEER_LINE.format(critique=_cut(c, MAX_CRITIQUE_CHARS) or NO_CRITIQUE, score=format_score(s))
        for c, s in peers
    ]
    return REVISION_ROUND.format(
        persona=PERSONAS[persona % len(PERSONAS)],
        conversation=format_conversation(context),
        response=_cut(response, MAX_TURN_CHARS) or "(empty)",
        previous_round=previous_round,
        own_critique=_cut(own[0], MAX_CRITIQUE_CHARS) or NO_CRITIQUE,
        own_score=format_score(own[1]),
        peers="\n".join(peer_lines) or "(none)",
    )


def clean_critique(text: str) -> str:
    """A generated critique up to its first line break or ``Score`` cue, cut to size."""
    text = text.strip().split("\n", 1)[0].split("Score:", 1)[0]
    return _cut(text, MAX_CRITIQUE_CHARS)
