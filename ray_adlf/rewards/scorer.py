"""``RewardScorer``: holds the models behind the reward parts and computes them for a batch.

For N samples (context turns, response text, optionally the response's token ids from the
policy, which shares the reference model's tokenizer) ``score`` returns ``[N]`` arrays:

- ``external``: ``clip(reward model output, 0, 1)`` (when a reward model is given), and
  ``external_score = 5 * external`` on the human scale;
- ``coherence``, ``length``, ``fluency``, ``faithfulness`` when enabled (``rewards/signals.py``),
  plus ``response_tokens``;
- ``plugin`` / ``http`` for ``--reward_plugin`` / ``--reward_url``, with ``plugin_failed`` /
  ``http_failed`` (1 where ``--on_reward_error fallback`` put ``--reward_fallback_value``).

The debate score comes from the critique agents (``debate/``); ``RewardCombiner`` turns all
parts into the ADLF reward. Used by ``RewardActor`` and by ``ray-adlf score``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np

from ray_adlf.config import RewardConfig
from ray_adlf.data.formats import prepare_tokenizer, render_prompt
from ray_adlf.data.records import Turn
from ray_adlf.models.loading import load_causal_lm, load_tokenizer
from ray_adlf.rewards.combine import RewardCombiner
from ray_adlf.rewards.models import SentenceEmbedder, response_logprobs
from ray_adlf.rewards.plugins import (
    HTTPRewardClient,
    RewardPluginError,
    call_plugin,
    load_plugin,
)
from ray_adlf.rewards.reward_model import load_reward_model, predict, reward_model_ids
from ray_adlf.rewards.signals import (
    coherence_from_embeddings,
    faithfulness_score,
    fluency_score,
    length_score,
)

log = logging.getLogger(__name__)


def make_combiner(rewards: RewardConfig) -> RewardCombiner:
    """The ``RewardCombiner`` for the ``--adlf_alpha`` / multi-objective / normalisation flags."""
    weights = {
        "external": rewards.quality_weight,
        "coherence": rewards.coherence_weight,
        "length": rewards.length_weight,
        "fluency": rewards.fluency_weight,
        "faithfulness": rewards.faithfulness_weight,
        "debate": rewards.debate_weight,
        "plugin": rewards.plugin_weight,
        "http": rewards.reward_url_weight,
    }
    return RewardCombiner(
        alpha=rewards.adlf_alpha,
        multi_objective=rewards.use_multi_objective,
        weights=weights,
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


class RewardScorer:
    """The reward parts of a batch (see the module docstring)."""

    def __init__(
        self,
        rewards: RewardConfig,
        reference_model: str,
        reward_model: str | None,
        token_format: str,
        max_length: int,
    ) -> None:
        self.cfg, self.token_format, self.max_length = rewards, token_format, max_length
        self.tokenizer = load_tokenizer(reference_model)
        prepare_tokenizer(self.tokenizer, token_format)
        self.reference = None
        if rewards.use_fluency_reward:
            self.reference = load_causal_lm(reference_model).eval()
            if len(self.tokenizer) > self.reference.get_input_embeddings().num_embeddings:
                self.reference.resize_token_embeddings(len(self.tokenizer))
        self.embedder = SentenceEmbedder() if rewards.use_coherence_reward else None
        self.reward_model, self.rm_tokenizer = (
            load_reward_model(reward_model) if reward_model else (None, None)
        )
        if self.rm_tokenizer is not None:
            prepare_tokenizer(self.rm_tokenizer, token_format)
        self.plugin = load_plugin(rewards.reward_plugin) if rewards.reward_plugin else None
        self.http = (
            HTTPRewardClient(
                rewards.reward_url,
                rewards.reward_url_timeout,
                rewards.reward_url_retries,
                max_response_bytes=rewards.http_max_response_bytes,
            )
            if rewards.reward_url
            else None
        )

    def score(
        self,
        contexts: Sequence[Sequence[Turn]],
        responses: Sequence[str],
        response_ids: Sequence[Sequence[int]] | None = None,
    ) -> dict[str, np.ndarray]:
        """Reward parts ``{name: [N]}`` for N (context, response) pairs."""
        cfg, n = self.cfg, len(responses)
        if len(contexts) != n or (response_ids is not None and len(response_ids) != n):
            raise ValueError("contexts, responses and response_ids must have the same length")
        if response_ids is None:
            response_ids = [
                self.tokenizer(r, add_special_tokens=False)["input_ids"] for r in responses
            ]
        parts: dict[str, np.ndarray] = {
            "response_tokens": np.array([len(ids) for ids in response_ids], float)
        }
        if self.reward_model is not None:
            rows = [
                reward_model_ids(c, r, self.rm_tokenizer, self.token_format, self.max_length)
                for c, r in zip(contexts, responses)
            ]
            predicted = predict(
                self.reward_model, rows, self.rm_tokenizer.pad_token_id, cfg.reward_batch_size
            )
            parts["external"] = np.clip(predicted, 0.0, 1.0)
            parts["external_score"] = 5.0 * parts["external"]
        if self.embedder is not None:
            questions = self.embedder.embed([question_text(c) for c in contexts])
            answers = self.embedder.embed(list(responses))
            empty = np.array([not r.strip() for r in responses])
            parts["coherence"] = coherence_from_embeddings(questions, answers, empty)
        if cfg.use_length_penalty:
            parts["length"] = np.array(
                [
                    length_score(
                        len(ids), cfg.length_band_min, cfg.length_band_max, cfg.length_band_width
                    )
                    for ids in response_ids
                ]
            )
        if self.reference is not None:
            prompts = [
                self.tokenizer(
                    render_prompt(c, self.tokenizer, self.token_format), add_special_tokens=False
                )["input_ids"]
                for c in contexts
            ]
            logprobs = response_logprobs(
                self.reference,
                prompts,
                response_ids,
                self.tokenizer.pad_token_id,
                self.max_length,
                cfg.reward_batch_size,
            )
            parts["fluency"] = np.array(
                [fluency_score(lp, list(ids)[: len(lp)]) for lp, ids in zip(logprobs, response_ids)]
            )
        if cfg.use_faithfulness_reward:
            parts["faithfulness"] = np.array(
                [faithfulness_score([t.content for t in c], r) for c, r in zip(contexts, responses)]
            )
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
