"""What the RL stage reports: each round's metrics, the held-out evaluation, the outputs.

``round_metrics`` is a round's row of ``metrics.jsonl`` (with the bytes it moved: the packed
weights of the push before it, and the rollout shards scattered to the other ranks); ``evaluate`` runs on
rank 0 after the rounds ``--eval_every`` names (and before round 1, for the baseline);
``stage_summary`` publishes the finished policy with ``rlhf_model_card`` as its README.md.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ray_adlf.algo.evaluation import mean_and_se, paired_difference
from ray_adlf.config import Config, from_dict, redacted_dict, to_dict
from ray_adlf.engines.base import SamplingParams
from ray_adlf.models.lora import lora_card
from ray_adlf.rewards.catalog import INTERNAL
from ray_adlf.train.common import run_name, stage_output_dir, write_model_outputs

if TYPE_CHECKING:
    from ray_adlf.actors.rl_actors import RLActors
    from ray_adlf.train.rl_learner import RLLearner
    from ray_adlf.train.rollout_producer import ProducedRound

log = logging.getLogger(__name__)

STAGE = "rlhf"
EVAL_SEED_OFFSET = 50_000_000  # evaluation samples never reuse a training round's seeds


def round_metrics(
    produced: ProducedRound,
    stats: dict,
    timings: dict,
    learner: RLLearner,
    scattered_bytes: int,
    round_index: int,
) -> dict[str, Any]:
    """What a round logs: reward parts and the producer's other metrics (the weights push that
    preceded the round, dynamic sampling), update statistics, lengths, the samples' policy lag
    (``lag/mean``, ``lag/max`` and a count per lag, ``lag/count_<k>``), bytes moved, timings."""
    rollout = produced.rollout
    lengths = [len(ids) for ids in rollout.response_ids]
    lags = [round_index - 1 - version for version in rollout.policy_versions]
    moved = {"kl", "beta", "logprob_mismatch"}
    return {
        **produced.metrics,
        **{k if "/" in k or k in moved else f"ppo/{k}": v for k, v in stats.items()},
        "samples": len(rollout),
        "response_length": float(np.mean(lengths)),
        "stopped_fraction": float(np.mean([r == "stop" for r in rollout.finish_reasons])),
        "learning_rate": learner.scheduler.get_last_lr()[0],
        "lag/mean": float(np.mean(lags)),
        "lag/max": float(max(lags)),
        **{f"lag/count_{k}": float(lags.count(k)) for k in sorted(set(lags))},
        "bytes/scatter": scattered_bytes,
        **{f"time/{k}": v for k, v in timings.items()},
    }


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
    contexts = [p.context for p in eval_prompts]
    parts = actors.eval.score(contexts, responses, greedy.prompt_ids, greedy.response_ids)
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


def rlhf_model_card(
    cfg: Config, policy_path: str, reward_model_path: str | None, metrics: dict[str, Any]
) -> str:
    """The RLHF output's README.md: starting point, reward, PPO settings, final figures."""
    ppo, rewards = cfg.ppo, cfg.rewards
    signals = [signal.name for signal in INTERNAL if signal.enabled(rewards)]
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
{lora_card(cfg.model, policy_path, "AutoModelForCausalLM")}"""


def rl_tracker(cfg: Config, last_round: int):
    """Rank 0's tracker (metrics.jsonl, W&B) continuing after ``last_round``."""
    from ray_adlf.tracking import METRICS_FILE, start_tracker

    return start_tracker(
        Path(cfg.run.output_dir) / METRICS_FILE,
        STAGE,
        last_round,
        cfg.run.output_dir,
        run_name(cfg),
        redacted_dict(cfg),
        cfg.run.use_wandb,
        cfg.run.wandb_project,
    )


def stage_summary(
    cfg: Config, result, resumed: bool, policy_path: str, reward_model_path: str | None
) -> dict[str, Any]:
    """The stage's summary from Ray Train's ``result``; a finished run's policy is written to
    the stage output (``write_model_outputs``), a stopped one says how to continue."""
    metrics = result.metrics
    summary = {
        "complete": metrics["round"] == cfg.ppo.rl_rounds,
        "resumed": resumed,
        "checkpoint": result.checkpoint.path,
        "step": metrics["round"],
        "max_steps": cfg.ppo.rl_rounds,
        **{k: metrics[k] for k in ("reward", "kl") if k in metrics},
        **{k: v for k, v in metrics.items() if k.startswith("eval/")},
    }
    if summary["complete"]:
        out_cfg = from_dict(to_dict(cfg))
        out_cfg.run.output_dir = str(stage_output_dir(cfg, STAGE))
        card = rlhf_model_card(cfg, policy_path, reward_model_path, metrics)
        with result.checkpoint.as_directory() as checkpoint_dir:
            policy = Path(checkpoint_dir) / "policy"
            summary["path"] = str(write_model_outputs(policy, out_cfg, card))
    else:
        log.warning(
            "%s: stopped at round %d of %d; run the same command again (or add --resume) "
            "to continue",
            STAGE,
            metrics["round"],
            cfg.ppo.rl_rounds,
        )
    return summary
