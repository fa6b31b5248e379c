"""RLHF with ADLF rewards: the PPO round driver, ``train_loop_per_worker`` of a TorchTrainer.

Before ``fit()`` the driver process starts the actors the round talks to: a ``RolloutPool``
(vLLM or transformers engines holding the policy), a ``RewardPool`` (reward model and internal
signals), a ``CritiquePool`` when the debate score is on, and a ``ReferenceActor`` when
``--reference_placement actor``. They reach the workers through ``train_loop_config``.

One round r = 1..rl_rounds, top to bottom:

1. rank 0: the next ``ppo_batch_size`` prompts (curriculum order in the first epoch when on);
   the pool samples ``num_samples_per_prompt`` responses each at the learner's temperature,
   seeded by (seed, r); the reward and critique pools score them; the ADLF combiner (on rank
   0: its normalisation statistics go into checkpoints) turns the parts into one reward each;
   with a reference actor, its logprobs too.
2. rank 0 broadcasts the batch; each rank keeps whole prompt groups, ``rank::world``.
3. every rank: old logprobs (and values), reference logprobs, KL, shaped rewards and
   advantages (``ppo_learner.make_experience``), then ``ppo_epochs`` of minibatch updates
   (``ppo_learner.ppo_update``, DDP all-reduces the gradients); the KL controller steps with
   the batch KL (all-reduced, so every rank holds the same beta).
4. rank 0: weights to the rollout engines (and critics that share the policy), metrics with
   per-phase timings to metrics.jsonl / W&B / Ray, and every ``--checkpoint_every`` rounds
   (and at the last) a checkpoint.

Randomness is derived from (seed, round): sampling seeds, minibatch order. A checkpoint holds
the policy (``policy/``, Hugging Face layout), the value head or critic, optimizer, scheduler,
round, prompt-stream position, KL controller, reward statistics, RNG states and the W&B run id,
so a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import logging
import math
import random
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ray_adlf.algo import AdaptiveKLController, FixedKLController
from ray_adlf.algo.evaluation import mean_and_se, paired_difference
from ray_adlf.config import Config, RewardConfig, from_dict, redacted_dict, to_dict
from ray_adlf.data.formats import prepare_tokenizer
from ray_adlf.data.records import Record
from ray_adlf.data.rl_prompts import PromptStream, build_rl_prompts, prompt_order
from ray_adlf.engines.base import SamplingParams
from ray_adlf.models.loading import load_causal_lm, load_tokenizer
from ray_adlf.models.policy import PolicyWithValue, pack_sequences, response_forward
from ray_adlf.train.common import (
    make_torch_trainer,
    planned,
    prepare_stage_run,
    run_name,
    stage_output_dir,
    write_model_outputs,
)
from ray_adlf.train.learner_state import load_learner_state, save_learner_state
from ray_adlf.train.ppo_learner import (
    global_masked_mean,
    global_row_mean,
    make_experience,
    ppo_update,
)

log = logging.getLogger(__name__)

STAGE = "rlhf"
RESUME_SECTIONS = ("data", "model", "rollout", "rewards", "debate", "ppo")


def kl_controller(cfg: Config) -> FixedKLController | AdaptiveKLController:
    """Fixed beta, or Ziegler et al.'s adaptive rule toward ``--kl_target``."""
    if cfg.ppo.use_dynamic_kl:
        return AdaptiveKLController(cfg.ppo.init_kl_coef, cfg.ppo.kl_target, cfg.ppo.kl_horizon)
    return FixedKLController(cfg.ppo.init_kl_coef)


def sampling_params(cfg: Config, round_index: int) -> SamplingParams:
    """The round's sampling: the learner's temperature, one seed per (seed, round)."""
    rollout = cfg.rollout
    return SamplingParams(
        temperature=rollout.temperature,
        top_p=rollout.top_p,
        top_k=rollout.top_k,
        max_new_tokens=rollout.max_new_tokens,
        n=cfg.ppo.num_samples_per_prompt,
        seed=cfg.run.seed * 100_003 + round_index,
    )


def build_learner(cfg: Config, policy_path: str):
    """The trainable module: PolicyWithValue for ``gae``, the bare policy for group baselines."""
    policy = load_causal_lm(policy_path, cfg.model.trust_remote_code)
    if cfg.ppo.advantage != "gae":
        return policy
    critic = None
    if cfg.ppo.critic_mode == "separate":
        critic = load_causal_lm(policy_path, cfg.model.trust_remote_code)
    return PolicyWithValue(policy, critic)


def policy_of(learner) -> torch.nn.Module:
    """The causal LM inside the learner module."""
    return learner.policy if isinstance(learner, PolicyWithValue) else learner


def rank_rows(num_prompts: int, group_size: int, rank: int, world: int) -> list[int]:
    """Rows of this rank: whole prompt groups ``g`` with ``g % world == rank``."""
    return [g * group_size + k for g in range(rank, num_prompts, world) for k in range(group_size)]


def save_checkpoint(
    directory: Path, learner, optimizer, scheduler, state: dict[str, Any], tokenizer
) -> None:
    """Policy in HF layout under ``policy/``; everything else as ``learner_state.json`` and
    ``learner_state.safetensors`` (``learner_state``: data only, no pickles)."""
    policy_of(learner).save_pretrained(directory / "policy")
    tokenizer.save_pretrained(directory / "policy")
    extra = {k: v for k, v in learner.state_dict().items() if not k.startswith("policy.")}
    kind, keys, position, has_gauss, cached = np.random.get_state()
    save_learner_state(
        directory,
        {
            **state,
            "learner_extra": extra if isinstance(learner, PolicyWithValue) else {},
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "python": random.getstate(),
                "numpy": [kind, keys, position, has_gauss, cached],
            },
        },
    )


def load_checkpoint(directory: Path, learner, optimizer, scheduler) -> dict[str, Any]:
    """Restore what ``save_checkpoint`` wrote; returns the rest of the saved state."""
    policy = load_causal_lm(str(directory / "policy"))
    policy_of(learner).load_state_dict(policy.state_dict())
    state = load_learner_state(directory)
    if isinstance(learner, PolicyWithValue):
        learner.load_state_dict(state["learner_extra"], strict=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"]["torch"])
    random.setstate(state["rng"]["python"])
    kind, keys, position, has_gauss, cached = state["rng"]["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    return state


def rollout_and_score(
    cfg: Config, round_index: int, chosen: list, pools: dict[str, Any], combiner, tokenizer
) -> dict[str, Any]:
    """Rank 0's half of a round: sample responses, score them, (reference logprobs)."""
    from ray_adlf.actors.reward import compute_adlf_rewards

    n = cfg.ppo.num_samples_per_prompt
    timings: dict[str, float] = {}
    started = time.perf_counter()
    generated = pools["rollout"].generate(
        [p.prompt_ids for p in chosen], sampling_params(cfg, round_index)
    )
    timings["generate_s"] = time.perf_counter() - started
    contexts = [p.context for p in chosen for _ in range(n)]
    responses = [tokenizer.decode(ids, skip_special_tokens=True) for ids in generated.response_ids]
    started = time.perf_counter()
    rewards = compute_adlf_rewards(
        contexts,
        responses,
        generated.response_ids,
        pools["reward"],
        combiner,
        pools.get("critique"),
    )
    timings["reward_s"] = time.perf_counter() - started
    timings.update(rewards.timings)
    ref_logprobs = None
    if "reference" in pools:
        started = time.perf_counter()
        ref_logprobs = pools["reference"].logprobs(
            generated.prompt_ids, generated.response_ids, cfg.rollout.temperature
        )
        timings["reference_s"] = time.perf_counter() - started
    return {
        "prompt_ids": generated.prompt_ids,
        "response_ids": generated.response_ids,
        "engine_logprobs": generated.response_logprobs,
        "finish_reasons": generated.finish_reasons,
        "scores": rewards.rewards.tolist(),
        "ref_logprobs": ref_logprobs,
        "reward_parts": rewards.means(),
        "timings": timings,
    }


EVAL_SEED_OFFSET = 50_000_000  # evaluation samples never reuse a training round's seeds


def evaluate(
    cfg: Config,
    pools: dict[str, Any],
    eval_prompts: list,
    tokenizer,
    reference_logprobs,
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
    greedy = pools["rollout"].generate(
        prompts, SamplingParams(temperature=0.0, max_new_tokens=cfg.rollout.max_new_tokens)
    )
    responses = [tokenizer.decode(ids, skip_special_tokens=True) for ids in greedy.response_ids]
    parts = pools["eval"].score([p.context for p in eval_prompts], responses, greedy.response_ids)
    scores = [float(s) for s in parts["external_score"]]
    sampled = pools["rollout"].generate(
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


def padded(rows: list[list[float]], width: int) -> torch.Tensor:
    """Ragged float rows right-padded with 0 to ``[B, width]``."""
    return torch.tensor([row + [0.0] * (width - len(row)) for row in rows], dtype=torch.float32)


def ppo_worker_loop(loop_config: dict[str, Any]) -> None:
    """The round driver on every Ray Train rank (module docstring)."""
    import ray.train
    import torch.distributed as dist
    from ray.train import Checkpoint
    from ray.train.torch import get_device, prepare_model
    from transformers import get_scheduler

    from ray_adlf.rewards.scorer import make_combiner
    from ray_adlf.tracking import METRICS_FILE, start_tracker, wandb_run_id

    cfg: Config = from_dict(loop_config["config"])
    ppo, policy_path, pools = cfg.ppo, loop_config["policy_path"], loop_config["pools"]
    context = ray.train.get_context()
    rank, world, device = context.get_world_rank(), context.get_world_size(), get_device()
    group = ppo.num_samples_per_prompt
    torch.manual_seed(cfg.run.seed)
    tokenizer = load_tokenizer(policy_path, cfg.model.trust_remote_code)
    if prepare_tokenizer(tokenizer, cfg.data.token_format):
        raise ValueError(
            f"{policy_path}: its tokenizer lacks the {cfg.data.token_format} tokens; "
            "run --run_sft with this --token_format first"
        )
    learner = build_learner(cfg, policy_path)
    optimizer = torch.optim.AdamW(learner.parameters(), lr=ppo.ppo_learning_rate, weight_decay=0.0)
    rows_per_rank = ppo.ppo_batch_size * group // world
    num_minibatches = max(
        1, min(rows_per_rank, ppo.ppo_batch_size * group // ppo.ppo_minibatch_size)
    )
    scheduler = get_scheduler(
        ppo.ppo_lr_schedule,
        optimizer,
        num_warmup_steps=0,
        num_training_steps=ppo.rl_rounds * ppo.ppo_epochs * num_minibatches,
    )
    reference = None
    if ppo.reference_placement == "colocated":
        reference = load_causal_lm(policy_path, cfg.model.trust_remote_code).eval().to(device)
        reference.requires_grad_(False)
    prompts = loop_config["prompts"]
    stream = PromptStream(
        prompt_order(
            prompts,
            ppo.ppo_batch_size,
            cfg.run.seed,
            cfg.data.use_curriculum,
            cfg.data.curriculum_start_fraction,
            cfg.data.curriculum_pacing,
            cfg.data.curriculum_score_weight,
        ),
        ppo.ppo_batch_size,
    )
    controller, combiner = kl_controller(cfg), make_combiner(cfg.rewards)
    start_round, eval_baseline = 1, None
    checkpoint = ray.train.get_checkpoint() or loop_config["start_checkpoint"]
    if checkpoint:
        with checkpoint.as_directory() as directory:
            state = load_checkpoint(Path(directory), learner, optimizer, scheduler)
        start_round = state["round"] + 1
        eval_baseline = state.get("eval_baseline")
        stream.load_state_dict(state["stream"])
        controller.load_state_dict(state["kl_controller"])
        combiner.load_state_dict(state["combiner"])
    model = prepare_model(
        learner,
        parallel_strategy_kwargs={
            "find_unused_parameters": ppo.advantage == "gae" and ppo.critic_mode == "separate"
        },
    )
    tracker = None
    if rank == 0:
        tracker = start_tracker(
            Path(cfg.run.output_dir) / METRICS_FILE,
            STAGE,
            start_round - 1,
            cfg.run.output_dir,
            run_name(cfg),
            redacted_dict(cfg),
            cfg.run.use_wandb,
            cfg.run.wandb_project,
        )
        pools["rollout"].sync_weights(policy_of(learner).state_dict())

    @torch.no_grad()
    def reference_logprobs(prompt_ids: list, response_ids: list) -> list[list[float]]:
        if reference is None:
            return pools["reference"].logprobs(prompt_ids, response_ids, cfg.rollout.temperature)
        batch = {
            k: v.to(device)
            for k, v in pack_sequences(prompt_ids, response_ids, tokenizer.pad_token_id).items()
        }
        out = response_forward(reference, batch, cfg.rollout.temperature, with_values=False)
        return [out["logprobs"][i, : len(r)].tolist() for i, r in enumerate(response_ids)]

    def run_eval(round_index: int) -> tuple[dict[str, float], list[float]]:
        return evaluate(
            cfg,
            pools,
            loop_config["eval_prompts"],
            tokenizer,
            reference_logprobs,
            round_index,
            eval_baseline,
        )

    if rank == 0 and cfg.ppo.eval_every and start_round == 1:
        before, eval_baseline = run_eval(0)
        tracker.log(before, 0)

    last_round = ppo.rl_rounds
    if cfg.run.stop_after_steps:
        last_round = min(last_round, start_round - 1 + cfg.run.stop_after_steps)
    for round_index in range(start_round, last_round + 1):
        # 1. rank 0: prompts -> responses -> ADLF rewards
        payload: list[Any] = [None]
        if rank == 0:
            chosen = [prompts[i] for i in stream.next_batch()]
            payload = [rollout_and_score(cfg, round_index, chosen, pools, combiner, tokenizer)]
        # 2. every rank gets the batch and keeps its prompt groups
        if world > 1:
            dist.broadcast_object_list(payload, src=0)
        data = payload[0]
        learner_started = time.perf_counter()
        mine = rank_rows(ppo.ppo_batch_size, group, rank, world)
        packed = pack_sequences(
            [data["prompt_ids"][i] for i in mine],
            [data["response_ids"][i] for i in mine],
            tokenizer.pad_token_id,
        )
        packed = {k: v.to(device) for k, v in packed.items()}
        width = packed["response_ids"].shape[1]
        # 3. experience and PPO updates on every rank
        if reference is not None:
            with torch.no_grad():
                ref_logprobs = response_forward(
                    reference, packed, cfg.rollout.temperature, with_values=False
                )["logprobs"]
        else:
            ref_logprobs = padded([data["ref_logprobs"][i] for i in mine], width).to(device)
        experience = make_experience(
            model,
            ref_logprobs,
            packed,
            torch.tensor([data["scores"][i] for i in mine], dtype=torch.float32, device=device),
            temperature=cfg.rollout.temperature,
            beta=controller.beta,
            kl_estimator=ppo.kl_estimator,
            kl_in_loss=ppo.kl_in_loss,
            advantage=ppo.advantage,
            gamma=ppo.gamma,
            lam=ppo.lam,
            group_size=group,
        )
        engine_logprobs = padded([data["engine_logprobs"][i] for i in mine], width).to(device)
        mismatch = global_masked_mean(
            (engine_logprobs - experience.old_logprobs).abs(), experience.mask
        )
        sequence_kl = global_row_mean(experience.kl.sum(dim=1))
        beta = controller.beta
        stats = ppo_update(
            model,
            optimizer,
            scheduler,
            experience,
            epochs=ppo.ppo_epochs,
            num_minibatches=num_minibatches,
            clip_eps=ppo.clip_eps,
            vf_coef=ppo.vf_coef,
            value_clip_eps=ppo.value_clip_eps,
            entropy_coef=ppo.entropy_coef,
            kl_in_loss=ppo.kl_in_loss,
            beta=beta,
            kl_estimator=ppo.kl_estimator,
            temperature=cfg.rollout.temperature,
            max_grad_norm=ppo.ppo_max_grad_norm,
            generator=torch.Generator().manual_seed(cfg.run.seed * 100_003 + round_index),
        )
        controller.update(sequence_kl, ppo.ppo_batch_size * group)
        learner_s = time.perf_counter() - learner_started
        # 4. rank 0: weight sync, metrics, checkpoint
        metrics: dict[str, Any] = {"round": round_index}
        with tempfile.TemporaryDirectory() as scratch:
            report_checkpoint = None
            if rank == 0:
                started = time.perf_counter()
                weights = policy_of(learner).state_dict()
                pools["rollout"].sync_weights(weights)
                if "critique" in pools:
                    pools["critique"].sync_weights(weights)
                timings = {
                    **data["timings"],
                    "learner_s": learner_s,
                    "sync_s": time.perf_counter() - started,
                }
                lengths = [len(ids) for ids in data["response_ids"]]
                metrics.update(data["reward_parts"])
                metrics.update({f"ppo/{k}": v for k, v in stats.items()})
                if stats["skipped_steps"]:
                    log.warning(
                        "round %d: %d PPO step(s) skipped (non-finite loss or gradient)",
                        round_index,
                        stats["skipped_steps"],
                    )
                metrics.update(
                    {
                        "samples": len(data["scores"]),
                        "kl": sequence_kl,
                        "beta": beta,
                        "logprob_mismatch": mismatch,
                        "response_length": float(np.mean(lengths)),
                        "stopped_fraction": float(
                            np.mean([r == "stop" for r in data["finish_reasons"]])
                        ),
                        "learning_rate": scheduler.get_last_lr()[0],
                        "epoch": stream.epoch,
                        **{f"time/{k}": v for k, v in timings.items()},
                    }
                )
                if cfg.ppo.eval_every and (
                    round_index % cfg.ppo.eval_every == 0 or round_index == last_round
                ):
                    started = time.perf_counter()
                    metrics.update(run_eval(round_index)[0])
                    metrics["time/eval_s"] = time.perf_counter() - started
                tracker.log(metrics, round_index)
                if round_index % cfg.run.checkpoint_every == 0 or round_index == last_round:
                    save_checkpoint(
                        Path(scratch),
                        learner,
                        optimizer,
                        scheduler,
                        {
                            "round": round_index,
                            "stream": stream.state_dict(),
                            "kl_controller": controller.state_dict(),
                            "combiner": combiner.state_dict(),
                            "eval_baseline": eval_baseline,
                            "wandb_run_id": wandb_run_id(cfg.run.output_dir, run_name(cfg), STAGE),
                        },
                        tokenizer,
                    )
                    report_checkpoint = Checkpoint.from_directory(scratch)
            ray.train.report(metrics, checkpoint=report_checkpoint)
    if tracker is not None:
        tracker.close()


def eval_reward_config(cfg: Config) -> RewardConfig:
    """Rewards settings of the evaluation pool: the evaluation reward model alone."""
    return RewardConfig(
        adlf_alpha=0.0, use_fluency_reward=False, reward_batch_size=cfg.rewards.reward_batch_size
    )


def run_rlhf(
    cfg: Config,
    train_records: list[Record],
    policy_path: str,
    reward_model_path: str | None,
    eval_records: Sequence[Record] = (),
    eval_reward_model_path: str | None = None,
    start_checkpoint=None,
    callbacks: Sequence[Any] = (),
) -> dict[str, Any]:
    """Start the actors, run the TorchTrainer, return the stage summary with the checkpoint.

    ``start_checkpoint``: a ``ray.train.Checkpoint`` of this stage to start from when the run
    has none of its own (a Tune trial restored or exploiting another's, ``ray_adlf/tune.py``);
    ``callbacks``: Ray Train ``UserCallback``s for the trainer.
    """
    from ray_adlf.actors.critique import CritiquePool
    from ray_adlf.actors.reference import ReferenceActorPool
    from ray_adlf.actors.reward import RewardPool
    from ray_adlf.actors.rollout import RolloutPool

    if cfg.rewards.adlf_alpha < 1.0 and reward_model_path is None:
        raise ValueError(
            "--adlf_alpha < 1 needs a reward model: add --run_reward_model or --reward_model_path"
        )
    eval_reward_model_path = eval_reward_model_path or cfg.ppo.eval_reward_model_path
    if cfg.ppo.eval_every and not (eval_reward_model_path and eval_records):
        raise ValueError(
            "--eval_every needs held-out records and an evaluation reward model "
            "(--eval_reward_model_path, or the pipeline's eval_reward_model)"
        )
    cfg = planned(cfg, STAGE)
    resumed = prepare_stage_run(cfg, STAGE, sections=RESUME_SECTIONS)
    tokenizer = load_tokenizer(policy_path, cfg.model.trust_remote_code)
    prompts = build_rl_prompts(
        train_records,
        tokenizer,
        cfg.data.token_format,
        cfg.data.target_score if cfg.data.use_decision_transformer else None,
        cfg.data.max_seq_length - cfg.rollout.max_new_tokens,
    )
    policy_cfg = from_dict(to_dict(cfg))
    policy_cfg.model.model_name = policy_path
    pools: dict[str, Any] = {
        "rollout": RolloutPool.from_config(policy_cfg),
        "reward": RewardPool.from_config(
            cfg, policy_path, reward_model_path if cfg.rewards.adlf_alpha < 1 else None
        ),
    }
    eval_prompts = []
    if cfg.ppo.eval_every:
        eval_prompts = build_rl_prompts(
            eval_records[: cfg.ppo.eval_prompts],
            tokenizer,
            cfg.data.token_format,
            cfg.data.target_score if cfg.data.use_decision_transformer else None,
            cfg.data.max_seq_length - cfg.rollout.max_new_tokens,
        )
        pools["eval"] = RewardPool(
            eval_reward_config(cfg),
            policy_path,
            eval_reward_model_path,
            cfg.data.token_format,
            cfg.data.max_seq_length,
            num_workers=1,
            num_cpus=cfg.resources.reward_num_cpus,
            max_restarts=cfg.resources.actor_max_restarts,
        )
    if cfg.rewards.use_debate_reward:
        pools["critique"] = CritiquePool.from_config(cfg, policy_path, policy_path)
    if cfg.ppo.reference_placement == "actor":
        pools["reference"] = ReferenceActorPool(
            policy_path, cfg.model.trust_remote_code, cfg.resources.reward_num_cpus
        )
    loop_config = {
        "config": to_dict(cfg),
        "policy_path": policy_path,
        "prompts": prompts,
        "eval_prompts": eval_prompts,
        "pools": pools,
        "start_checkpoint": start_checkpoint,
    }
    try:
        result = make_torch_trainer(ppo_worker_loop, loop_config, cfg, STAGE, callbacks).fit()
    finally:
        for pool in pools.values():
            pool.shutdown()
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
        with result.checkpoint.as_directory() as checkpoint_dir:
            summary["path"] = str(
                write_model_outputs(
                    Path(checkpoint_dir) / "policy",
                    out_cfg,
                    rlhf_model_card(cfg, policy_path, reward_model_path, metrics),
                )
            )
    else:
        log.warning(
            "%s: stopped at round %d of %d; run the same command again (or add --resume) "
            "to continue",
            STAGE,
            metrics["round"],
            cfg.ppo.rl_rounds,
        )
    return summary


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
