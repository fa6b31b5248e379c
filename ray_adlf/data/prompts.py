"""Prompts for generation from a model trained by the SFT stage.

``generation_prompt``: the context, conditioned on ``target_score`` when the model was trained
with ``--use_decision_transformer`` (the same ``Target score: X/5`` system line as in training),
followed by the format's cue for the assistant's turn.

``critique_prompt``: a whole conversation followed by the critique request of the self-critique
format (``ray_adlf.data.critique``) and the assistant cue; a model trained with
``--use_self_critique`` answers ``Score: X/5\\nReason: ...``.
"""

from __future__ import annotations

from collections.abc import Sequence

from ray_adlf.data.conditioning import condition_on_score
from ray_adlf.data.critique import CRITIQUE_REQUEST
from ray_adlf.data.formats import render_prompt
from ray_adlf.data.records import Turn


def generation_prompt(
    context: Sequence[Turn], tokenizer, token_format: str, target_score: float | None
) -> str:
    """The context (score-conditioned unless ``target_score`` is None) + the assistant cue."""
    turns = list(context) if target_score is None else condition_on_score(context, target_score)
    return render_prompt(turns, tokenizer, token_format)


def critique_prompt(conversation: Sequence[Turn], tokenizer, token_format: str) -> str:
    """The conversation, the critique request and the assistant cue."""
    return render_prompt([*conversation, Turn("user", CRITIQUE_REQUEST)], tokenizer, token_format)
