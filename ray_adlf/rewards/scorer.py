"""``RewardScorer``: the reward signals that need a model or a service, for a batch.

For N samples (context turns, response text, and the policy's own prompt and response token
ids) ``score`` returns ``[N]`` arrays:

- ``external``: ``clip(reward model output, 0, 1)`` (when a reward model is given), and
  ``external_score = 5 * external`` on the human scale. When the reward model shares the
  policy's tokenizer (same vocabulary) its input is built from the policy's ids,
  ``prompt + response (+ the closing marker when the response was cut)``, which is what
  rendering the decoded text would give without the decode / re-render / re-tokenize round trip
  (byte-level BPE does not round-trip arbitrary ids); otherwise the conversation is rendered
  and tokenized with the reward model's tokenizer (``reward_model_ids``). Batches are padded
  to their own longest row.
- ``coherence`` (``--use_coherence_reward``, the sentence embedder);
- ``plugin`` / ``http`` for ``--reward_plugin`` / ``--reward_url``, with ``plugin_failed`` /
  ``http_failed`` (1 where ``--on_reward_error fallback`` put ``--reward_fallback_value``);
- ``response_tokens``.

The pure signals (length, fluency, faithfulness) come from ``rewards.catalog`` and the debate
score from the critics; ``RewardCombiner`` turns all parts into the ADLF reward. Used by
``RewardActor`` (``actors/reward.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence

import numpy as np

from ray_adlf.config import RewardConfig
from ray_adlf.data.formats import prepare_tokenizer, render_conversation, render_prompt
from ray_adlf.data.records import Turn
from ray_adlf.models.loading import load_tokenizer
from ray_adlf.rewards.catalog import SIGNALS
from ray_adlf.rewards.combine import RewardCombiner
from ray_adlf.rewards.models import SentenceEmbedder
from ray_adlf.rewards.plugins import (
    HTTPRewardClient,
    RewardPluginError,
    call_plugin,
    load_plugin,
)
from ray_adlf.rewards.reward_model import load_reward_model, predict, reward_model_ids
from ray_adlf.rewards.signals import coherence_from_embeddings

log = logging.getLogger(__name__)


def make_combiner(rewards: RewardConfig) -> RewardCombiner:
    """The ``RewardCombiner`` for the ``--adlf_alpha`` / multi-objective / normalisation flags."""
    return RewardCombiner(
        alpha=rewards.adlf_alpha,
        multi_objective=rewards.use_multi_objective,
        weights={signal.name: signal.weight(rewards) for signal in SIGNALS},
        objective_normalization=rewards.objective_normalization,
        normalize_rewards=rewards.normalize_rewards,
        reward_clip=rewards.reward_clip,
    )


def question_text(context: Sequence[Turn]) -> str:
    """The last user turn of the context (what the response answers)."""
    for turn in reversed(context):
        if turn.role == "user":
            return turn.content
    return "\n".join(t.content for t in context)


def closing_ids(tokenizer, token_format: str) -> list[int] | None:
    """The ids a rendered conversation has after an assistant turn's content (its closing
    marker and what follows), e.g. ``[</assistant>]`` for ``role_markers``; None when the
    format does not render a turn as prompt + content + closing (its rows are then rendered
    from the text)."""
    context = [Turn("user", "hi")]
    text, _ = render_conversation([*context, Turn("assistant", "ok")], tokenizer, token_format)
    before = render_prompt(context, tokenizer, token_format) + "ok"
    if not text.startswith(before):
        return None
    return tokenizer(text[len(before) :], add_special_tokens=False)["input_ids"]


def ids_with_closing(prompt: Sequence[int], response: Sequence[int], closing: list[int]) -> list:
    """``prompt + response`` closed as a rendered conversation would be: the rest of
    ``closing`` after its first id when the response stopped on it, all of it otherwise."""
    row = [*prompt, *response]
    if closing and response and response[-1] == closing[0]:
        return row + closing[1:]
    return row + closing


class RewardScorer:
    """The model and service signals of a batch (see the module docstring).

    ``signals``: the names to compute among those ``rewards`` enables (all by default; the
    held-out evaluation asks for ``("external",)``).
    """

    def __init__(
        self,
        rewards: RewardConfig,
        policy_model: str,
        reward_model: str | None,
        token_format: str,
        max_length: int,
        signals: Collection[str] | None = None,
    ) -> None:
        self.cfg, self.token_format, self.max_length = rewards, token_format, max_length
        wanted = {s.name for s in SIGNALS if s.enabled(rewards) or s.name == "external"}
        if signals is not None:
            wanted &= set(signals)
        self.reward_model = self.rm_tokenizer = self.embedder = self.plugin = self.http = None
        self.rm_closing: list[int] | None = None
        if reward_model and "external" in wanted:
            self.reward_model, self.rm_tokenizer = load_reward_model(reward_model)
            prepare_tokenizer(self.rm_tokenizer, token_format)
            policy_tokenizer = load_tokenizer(policy_model)
            prepare_tokenizer(policy_tokenizer, token_format)
            if policy_tokenizer.get_vocab() == self.rm_tokenizer.get_vocab():
                self.rm_closing = closing_ids(self.rm_tokenizer, token_format)  # None: from text
        if "coherence" in wanted:
            self.embedder = SentenceEmbedder()
        if "plugin" in wanted:
            self.plugin = load_plugin(rewards.reward_plugin)
        if "http" in wanted:
            self.http = HTTPRewardClient(
                rewards.reward_url,
                rewards.reward_url_timeout,
                rewards.reward_url_retries,
                max_response_bytes=rewards.http_max_response_bytes,
            )

    def reward_model_rows(
        self,
        contexts: Sequence[Sequence[Turn]],
        responses: Sequence[str],
        prompt_ids: Sequence[Sequence[int]] | None,
        response_ids: Sequence[Sequence[int]] | None,
    ) -> list[list[int]]:
        """The reward model's input ids: from the policy's ids when it shares the tokenizer
        and they are given, else rendered from the text; the last ``max_length`` kept."""
        if self.rm_closing is not None and prompt_ids is not None and response_ids is not None:
            rows = [
                ids_with_closing(p, r, self.rm_closing) for p, r in zip(prompt_ids, response_ids)
            ]
            return [row[-self.max_length :] for row in rows]
        return [
            reward_model_ids(c, r, self.rm_tokenizer, self.token_format, self.max_length)
            for c, r in zip(contexts, responses)
        ]

    def score(
        self,
        contexts: Sequence[Sequence[Turn]],
        responses: Sequence[str],
        prompt_ids: Sequence[Sequence[int]] | None = None,
        response_ids: Sequence[Sequence[int]] | None = None,
    ) -> dict[str, np.ndarray]:
        """Reward parts ``{name: [N]}`` for N (context, response) pairs."""
        n = len(responses)
        if len(contexts) != n or any(
            ids is not None and len(ids) != n for ids in (prompt_ids, response_ids)
        ):
            raise ValueError("contexts, responses and their token ids must have the same length")
        parts: dict[str, np.ndarray] = {}
        if response_ids is not None:
            parts["response_tokens"] = np.array([len(ids) for ids in response_ids], float)
        if self.reward_model is not None:
            rows = self.reward_model_rows(contexts, responses, prompt_ids, response_ids)
            predicted = predict(
                self.reward_model, rows, self.rm_tokenizer.pad_token_id, self.cfg.reward_batch_size
            )
            parts["external"] = np.clip(predicted, 0.0, 1.0)
            parts["external_score"] = 5.0 * parts["external"]
        if self.embedder is not None:
            questions = self.embedder.embed([question_text(c) for c in contexts])
            answers = self.embedder.embed(list(responses))
            empty = np.array([not r.strip() for r in responses])
            parts["coherence"] = coherence_from_embeddings(questions, answers, empty)
        if self.plugin is not None:
            plugin = self.plugin
            self._guarded(parts, "plugin", lambda: call_plugin(plugin, contexts, responses), n)
        if self.http is not None:
            http = self.http
            self._guarded(parts, "http", lambda: http(contexts, responses), n)
        return parts

    def _guarded(
        self, parts: dict[str, np.ndarray], name: str, compute: Callable[[], np.ndarray], n: int
    ) -> None:
        """``parts[name] = compute()``; on failure raise, or (fallback) count it and fill in."""
        try:
            parts[name], parts[f"{name}_failed"] = compute(), np.zeros(n)
        except RewardPluginError as err:
            if self.cfg.on_reward_error == "raise":
                raise
            log.warning("reward %s failed, using %s: %s", name, self.cfg.reward_fallback_value, err)
            parts[name] = np.full(n, self.cfg.reward_fallback_value)
            parts[f"{name}_failed"] = np.ones(n)
