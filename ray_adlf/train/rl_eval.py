"""The RL stage's held-out evaluation and its model card.

``evaluate`` runs on rank 0 after the rounds ``--eval_every`` names (and before round 1, for
the baseline); ``rlhf_model_card`` writes the RLHF output's README.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ray_adlf.algo.evaluation import mean_and_se, paired_difference
from ray_adlf.config import Config, RewardConfig
from ray_adlf.engines.base import SamplingParams
from ray_adlf.train.common import run_name

if TYPE_CHECKING:
    from ray_adlf.actors.rl_actors import RLActors

EVAL_SEED_OFFSET = 50_000_000  # evaluation samples never reuse a training round's seeds


def evaluate(
    cfg: Config,
    actors: RLActors,
    eval_prompts: list,
    tokenizer,
    reference_logprobs: Callable[[list, list], list[list[float]]],
    round_index: int,
    baseline: list[float] | None,
) -> tuple[dict[str, float], list[float]]:
    """The held-out evaluation; returns its metrics and the per-prompt scores.

    - ``eval/score`` (+ ``_se``): the evaluation reward model's score (0-5) of the greedy
      response to each held-out prompt, mean and standard error over prompts;
    - ``eval/kl`` (+ ``_se``): the KL to the reference (SFT) policy per sequence,
      ``sum_t log pi(y_t) - log pi_ref(y_t)`` on one response sampled at the training
      temperature per prompt (an unbiased estimate of the sequence KL);
    - ``eval/gain`` (+ ``_se``): the paired difference of the scores from ``baseline`` (the
      scores before round 1), with ``eval/baseline_score``;
    - ``eval/objective`` (what Tune ranks on): ``eval/score`` less ``--kl_budget_penalty`` per
      unit of ``eval/kl`` over ``--kl_budget``.
    """
    prompts = [p.prompt_ids for p in eval_prompts]
    greedy = actors.rollout.generate(
        prompts, SamplingParams(temperature=0.0, max_new_tokens=cfg.rollout.max_new_tokens)
    )
    responses = [tokenizer.decode(ids, skip_special_tokens=True) for ids in greedy.response_ids]
    parts = actors.eval.score([p.context for p in eval_prompts], responses, greedy.response_ids)
    scores = [float(s) for s in parts["external_score"]]
    sampled = actors.rollout.generate(
        prompts,
        SamplingParams(
            temperature=cfg.rollout.temperature,
            max_new_tokens=cfg.rollout.max_new_tokens,
            seed=cfg.run.seed * 100_003 + EVAL_SEED_OFFSET + round_index,
        ),
    )
    ref = reference_logprobs(sampled.prompt_ids, sampled.response_ids)
    kls = [math.fsum(lp) - math.fsum(rp) for lp, rp in zip(sampled.response_logprobs, ref)]
    score, score_se = mean_and_se(scores)
    kl, kl_se = mean_and_se(kls)
    over = max(0.0, kl - cfg.ppo.kl_budget)
    metrics = {
        "eval/score": score,
        "eval/score_se": score_se,
        "eval/kl": kl,
        "eval/kl_se": kl_se,
        "eval/kl_over_budget": over,
        "eval/objective": score - cfg.ppo.kl_budget_penalty * over,
    }
    if baseline is not None:
        gain, gain_se = paired_difference(scores, baseline)
        baseline_score, baseline_se = mean_and_se(baseline)
        metrics.update(
            {
                "eval/gain": gain,
                "eval/gain_se": gain_se,
                "eval/baseline_score": baseline_score,
                "eval/baseline_score_se": baseline_se,
            }
        )
    return metrics, scores


def eval_reward_config(cfg: Config) -> RewardConfig:
    """Rewards settings of the evaluation pool: the evaluation reward model alone."""
    return RewardConfig(
        adlf_alpha=0.0, use_fluency_reward=False, reward_batch_size=cfg.rewards.reward_batch_size
    )


def rlhf_model_card(
    cfg: Config, policy_path: str, reward_model_path: str | None, metrics: dict[str, Any]
) -> str:
    """The RLHF output's README.md: starting point, reward, PPO settings, final figures."""
    ppo, rewards = cfg.ppo, cfg.rewards
    signals = [
        name
        for name, on in (
            ("coherence", rewards.use_coherence_reward),
            ("length", rewards.use_length_penalty),
            ("fluency", rewards.use_fluency_reward),
            ("faithfulness", rewards.use_faithfulness_reward),
            ("debate", rewards.use_debate_reward),
            ("plugin", bool(rewards.reward_plugin)),
            ("http", bool(rewards.reward_url)),
        )
        if on
    ]
    figures = ", ".join(f"{k} {metrics[k]:.4g}" for k in ("reward", "kl", "beta") if k in metrics)
    return f"""---
library_name: transformers
base_model: {policy_path}
tags: [ray-adlf, rlhf, ppo]
---

# {run_name(cfg)}: RLHF with ADLF rewards

PPO policy trained by the ray_adlf RLHF stage from `{policy_path}` ({ppo.rl_rounds} rounds of
{ppo.ppo_batch_size} prompts x {ppo.num_samples_per_prompt} samples, {cfg.resources.num_workers} learner
worker(s)).

- reward: `(1 - {rewards.adlf_alpha:g}) * external + {rewards.adlf_alpha:g} * internal`;
  external = reward model `{reward_model_path}`; internal signals: {", ".join(signals) or "none"}
  ({"multi-objective, normalised" if rewards.use_multi_objective else "mean"})
- PPO: advantage {ppo.advantage} (gamma {ppo.gamma:g}, lambda {ppo.lam:g}), clip {ppo.clip_eps:g},
  {ppo.ppo_epochs} epoch(s), learning rate {ppo.ppo_learning_rate:g}, KL {ppo.kl_estimator}
  {"as a loss term" if ppo.kl_in_loss else "penalty in the reward"}, beta {ppo.init_kl_coef:g}
  {f"adaptive toward KL {ppo.kl_target:g}" if ppo.use_dynamic_kl else "fixed"}; sampling
  temperature {cfg.rollout.temperature:g}, {cfg.rollout.max_new_tokens} new tokens at most
- last round: {figures}; curves in `report.md`, every value in `metrics.jsonl`
- text: token format `{cfg.data.token_format}`
"""
