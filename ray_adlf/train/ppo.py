"""RLHF with ADLF rewards: the PPO round driver, ``train_loop_per_worker`` of a TorchTrainer.

Before ``fit()`` the driver spawns the actors the round talks to (``actors.rl_actors``: rollout
engines on the policy, reward actors, critics, the evaluation reward actor, the reference actor
where asked for); their models load while the worker group starts, and rank 0 waits for them
before its first weights push. Each rank builds an ``RLLearner`` (``rl_learner``), which owns
the model, optimizer, schedule, KL controller, prompt stream, reward combiner and critic seeds.

Rank 0's ``RolloutProducer`` (``rollout_producer``) makes the rounds' rollouts (in a thread of
its own under ``--async_rollout``, else in the learner's thread): ``produce_round`` takes the
next ``ppo_batch_size`` prompts (curriculum order in the first epoch when on), the engines
sample ``num_samples_per_prompt`` responses each at the learner's temperature, seeded by (seed,
round), the round's one reference pass runs (the colocated reference on rank 0, or the reference
actor) when the KL or fluency use it, and the reward and critique actors score the samples; the
ADLF combiner turns the parts into one reward each (plus DAPO's overlong shaping with
``--overlong_buffer``; with ``--dynamic_sampling`` groups whose rewards are all equal are
dropped and more prompts sampled): one ``Rollout``. Without ``--async_rollout`` round r is
sampled with the weights of round r - 1; with it, with those of round ``r - 1 -
--max_staleness``, while the learner trains the rounds before.

One round r = 1..rl_rounds, top to bottom:

1. rank 0: round r's rollout from the producer;
2. rank 0 scatters the rollout: each rank receives only its shard (whole prompt groups);
3. every rank: ``RLLearner.train``: old logprobs, KL, advantages, TIS weights, the PPO updates
   (DDP all-reduces the gradients), the KL controller's step; in a round the ledger records
   (``--ledger_every``), each rank's per-sample advantage, KL and logprobs are gathered to
   rank 0, which queues the round's rows for its ledger thread (``ledger``, ``rl_ledger``);
4. every rank: the new weights (sharded: a gather into rank 0); rank 0 hands them to the
   producer, which pushes them to every consumer (engines, critics on the policy) before the
   round that needs them; metrics with per-phase timings to metrics.jsonl / W&B / Ray; every
   ``--checkpoint_every`` rounds (and at the last) a checkpoint (sharded: every rank writes
   its shards), which holds the rollouts already made for later rounds, after the ledger's
   queued rounds are on disk.

Randomness is derived from (seed, round): sampling seeds, minibatch order, and the critics'
seeds from their call count, which the checkpoint holds. Every consumer of the weights is
synced when a run starts or resumes, so a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import logging
import pickle
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ray_adlf.algo import groups_with_reward_variance, overlong_penalty
from ray_adlf.config import Config, from_dict, reference_each_round, to_dict
from ray_adlf.cpu_plan import phase_threads
from ray_adlf.data.formats import prepare_tokenizer
from ray_adlf.data.records import Record
from ray_adlf.data.rl_prompts import build_rl_prompts
from ray_adlf.engines.base import SamplingParams
from ray_adlf.engines.weights import copy_weights
from ray_adlf.ledger.schema import join_columns, scored_columns, select_rows
from ray_adlf.ledger.store import LEDGER_DIR, LedgerWriter, is_recorded
from ray_adlf.models.loading import load_tokenizer
from ray_adlf.models.lora import merged_model_path
from ray_adlf.rewards.catalog import SignalInputs
from ray_adlf.train.common import (
    make_torch_trainer,
    planned,
    prepare_stage_run,
    run_name,
)
from ray_adlf.train.rl_eval import STAGE, evaluate, rl_tracker, round_metrics, stage_summary
from ray_adlf.train.rl_learner import RLLearner, max_lag
from ray_adlf.train.rl_ledger import gather_to_rank0, round_columns
from ray_adlf.train.rollout_batch import Rollout
from ray_adlf.train.rollout_producer import ProducedRound, RolloutProducer

log = logging.getLogger(__name__)

RESUME_SECTIONS = ("data", "model", "rollout", "rewards", "debate", "ppo")
BATCH_SEED_OFFSET = 100_000_000  # dynamic sampling's extra batches never reuse a round's seeds


def sampling_params(cfg: Config, round_index: int, batch: int = 0) -> SamplingParams:
    """The round's sampling: the learner's temperature, one seed per (seed, round, batch)."""
    rollout = cfg.rollout
    return SamplingParams(
        temperature=rollout.temperature,
        top_p=rollout.top_p,
        top_k=rollout.top_k,
        max_new_tokens=rollout.max_new_tokens,
        n=cfg.ppo.num_samples_per_prompt,
        seed=cfg.run.seed * 100_003 + round_index + batch * BATCH_SEED_OFFSET,
    )


def rollout_and_score(
    cfg: Config,
    round_index: int,
    batch: int,
    version: int,
    chosen: list,
    actors,
    learner: RLLearner,
    tokenizer,
    record: bool,
) -> tuple[Rollout, dict[str, np.ndarray], dict[str, float], dict[str, list] | None]:
    """Sample ``chosen`` prompts with the engines at weights ``version``, the one reference
    pass (when used), score. Returns the rollout, every reward part per sample (``reward``:
    the score trained on, with ``overlong`` when shaping is on), the seconds per phase and,
    when the ledger ``record``s the round, its columns (``ledger.schema.scored_columns``)."""
    from ray_adlf.actors.reward import compute_adlf_rewards

    n, ppo = cfg.ppo.num_samples_per_prompt, cfg.ppo
    started = time.perf_counter()
    generated = actors.rollout.generate(
        [p.prompt_ids for p in chosen], sampling_params(cfg, round_index, batch)
    )
    timings = {"generate_s": time.perf_counter() - started}
    prompt_ids, response_ids = generated.prompt_ids, generated.response_ids
    ref_logprobs = None
    if reference_each_round(cfg):
        started = time.perf_counter()
        ref_logprobs = reference_logprobs(actors, learner, prompt_ids, response_ids, tokenizer)
        timings["reference_s"] = time.perf_counter() - started
    inputs = SignalInputs(
        [p.context for p in chosen for _ in range(n)],
        [tokenizer.decode(ids, skip_special_tokens=True) for ids in response_ids],
        response_ids,
        ref_logprobs,
    )
    started = time.perf_counter()
    rewards = compute_adlf_rewards(
        cfg.rewards, inputs, prompt_ids, actors.reward, learner.combiner, actors.critique
    )
    timings.update(reward_s=time.perf_counter() - started, **rewards.timings)
    scores = torch.as_tensor(rewards.rewards, dtype=torch.float32)
    parts = dict(rewards.parts)
    if ppo.overlong_buffer:
        lengths = torch.tensor([len(ids) for ids in response_ids])
        shaping = overlong_penalty(
            lengths, cfg.rollout.max_new_tokens, ppo.overlong_buffer, ppo.overlong_penalty
        ).float()
        scores = scores + shaping
        parts["overlong"] = shaping.numpy()
    parts["reward"] = scores.numpy()
    columns = None
    if record:
        columns = scored_columns(
            [p.record_id for p in chosen for _ in range(n)],
            [len(p.context) for p in chosen for _ in range(n)],
            inputs.contexts,
            inputs.responses,
            [len(ids) for ids in response_ids],
            parts,
            parts["reward"],
            rewards.debate,
            cfg.rewards.adlf_alpha,
            cfg.run.ledger_max_chars,
        )
        columns["finish_reason"] = list(generated.finish_reasons)
    rollout = Rollout(
        prompt_ids,
        response_ids,
        generated.response_logprobs,
        generated.finish_reasons,
        scores,
        n,
        [version] * len(response_ids),
        ref_logprobs,
    )
    return rollout, parts, timings, columns


def produce_round(
    cfg: Config, round_index: int, version: int, prompts: list, actors, learner, tokenizer
) -> ProducedRound:
    """Round ``round_index``'s rollout from ``ppo_batch_size`` prompts of the stream, sampled by
    weights ``version``. With ``--dynamic_sampling`` (DAPO) up to
    ``--dynamic_sampling_max_batches`` batches are sampled until ``ppo_batch_size`` groups
    have rewards that differ; the batch takes those first, then (when too few) groups of equal
    rewards, which carry no advantage, counted in ``dynamic_sampling/filled_groups``."""
    ppo = cfg.ppo
    batches = ppo.dynamic_sampling_max_batches if ppo.dynamic_sampling else 1
    record = is_recorded(round_index, cfg.run.ledger_every, ppo.rl_rounds)
    rollouts, parts, columns, timings = [], [], [], {}
    for batch in range(batches):
        chosen = [prompts[i] for i in learner.stream.next_batch()]
        rollout, batch_parts, batch_timings, batch_columns = rollout_and_score(
            cfg, round_index, batch, version, chosen, actors, learner, tokenizer, record
        )
        rollouts.append(rollout)
        parts.append(batch_parts)
        columns.append(batch_columns)
        for key, seconds in batch_timings.items():
            timings[key] = timings.get(key, 0.0) + seconds
        scores = torch.cat([r.scores for r in rollouts])
        varied = groups_with_reward_variance(scores, ppo.num_samples_per_prompt)
        if not ppo.dynamic_sampling or int(varied.sum()) >= ppo.ppo_batch_size:
            break
    rollout = Rollout.concat(rollouts)
    joined = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    samples = join_columns(columns) if record else None
    metrics = {}
    if ppo.dynamic_sampling:
        order = torch.cat([torch.nonzero(varied).squeeze(1), torch.nonzero(~varied).squeeze(1)])
        groups = sorted(order[: ppo.ppo_batch_size].tolist())
        size = ppo.num_samples_per_prompt
        rows = [g * size + k for g in groups for k in range(size)]
        rollout = rollout.rows(rows)
        joined = {key: values[rows] for key, values in joined.items()}
        samples = samples and select_rows(samples, rows)
        metrics = {
            "dynamic_sampling/batches": float(len(rollouts)),
            "dynamic_sampling/equal_reward_fraction": 1.0 - float(varied.float().mean()),
            "dynamic_sampling/filled_groups": float(sum(not varied[g] for g in groups)),
        }
    metrics.update({key: float(np.mean(values)) for key, values in joined.items()})
    metrics["epoch"] = learner.stream.epoch
    return ProducedRound(round_index, rollout, metrics, timings, samples)


def reference_logprobs(
    actors, learner: RLLearner, prompt_ids: list, response_ids: list, tokenizer
) -> list[list[float]]:
    """The reference's logprobs of every response token: the reference actor's, else the
    colocated reference's on rank 0."""
    if not learner.has_reference:
        return actors.reference.logprobs(prompt_ids, response_ids, learner.cfg.rollout.temperature)
    return learner.reference_logprobs(prompt_ids, response_ids, tokenizer.pad_token_id)


def push_weights(actors, weights, version: int) -> dict[str, float]:
    """One verified push to every consumer of the policy; the metrics it logs."""
    actors.push_weights(weights)
    last = actors.rollout.last_sync
    return {
        "bytes/weights": float(last.nbytes),
        "sync/verified": float(last.verified),
        "sync/fingerprint_s": last.fingerprint_s,
    }


def ppo_worker_loop(loop_config: dict[str, Any]) -> None:
    """The round driver on every Ray Train rank (module docstring)."""
    import ray.train
    import torch.distributed as dist
    from ray.train import Checkpoint
    from ray.train.torch import get_device

    from ray_adlf.tracking import wandb_run_id

    cfg: Config = from_dict(loop_config["config"])
    policy_path, actors = loop_config["policy_path"], loop_config["actors"]
    context = ray.train.get_context()
    rank, world, device = context.get_world_rank(), context.get_world_size(), get_device()
    if not cfg.resources.use_gpu:
        torch.set_num_threads(phase_threads(cfg)["learner"])
    torch.manual_seed(cfg.run.seed)
    tokenizer = load_tokenizer(policy_path, cfg.model.trust_remote_code)
    if prepare_tokenizer(tokenizer, cfg.data.token_format):
        raise ValueError(
            f"{policy_path}: its tokenizer lacks the {cfg.data.token_format} tokens; "
            "run --run_sft with this --token_format first"
        )
    prompts = loop_config["prompts"]
    learner = RLLearner(cfg, policy_path, prompts, world, rank, device)
    learner.prepare()
    checkpoint = ray.train.get_checkpoint() or loop_config["start_checkpoint"]
    if checkpoint:
        with checkpoint.as_directory() as directory:
            learner.load(Path(directory))
    start_round, tracker, producer, lag = learner.round + 1, None, None, max_lag(cfg)
    ledger, ledger_rows = None, None
    weights = learner.weights_to_sync()  # every rank: sharded, a gather into rank 0
    if rank == 0:
        tracker = rl_tracker(cfg, learner.round)
        if cfg.run.ledger_every:
            ledger = LedgerWriter(Path(cfg.run.output_dir) / LEDGER_DIR, learner.round)
        actors.wait_ready()
        if actors.critique is not None:
            actors.critique.calls = learner.critic_calls
        in_flight = [ProducedRound.from_data(data) for data in learner.in_flight]
        producer = RolloutProducer(
            lambda r, v: produce_round(cfg, r, v, prompts, actors, learner, tokenizer),
            lambda w, v: push_weights(actors, w, v),
            lag,
            start_round + len(in_flight),
            cfg.ppo.rl_rounds,
            in_flight,
        )
        producer.push_now(weights, learner.round)
    weights = None

    def run_eval(round_index: int) -> tuple[dict[str, float], list[float]]:
        eval_prompts, baseline = loop_config["eval_prompts"], learner.eval_baseline

        def reference(prompt_ids: list, response_ids: list) -> list[list[float]]:
            return reference_logprobs(actors, learner, prompt_ids, response_ids, tokenizer)

        return evaluate(cfg, actors, eval_prompts, tokenizer, reference, round_index, baseline)

    if rank == 0:
        if cfg.ppo.eval_every and start_round == 1:
            before, learner.eval_baseline = run_eval(0)
            tracker.log(before, 0)
        producer.start()
    last_round = cfg.ppo.rl_rounds
    if cfg.run.stop_after_steps:
        last_round = min(last_round, start_round - 1 + cfg.run.stop_after_steps)

    def hand_over(round_index: int, weights: dict[str, torch.Tensor]) -> None:
        """Rank 0: the round's weights to the producer (a copy when it may push them while
        the learner already trains the next round)."""
        if rank == 0 and round_index < last_round:
            producer.publish(round_index, copy_weights(weights) if lag else weights)

    try:
        for round_index in range(start_round, last_round + 1):
            # 1. rank 0: round r's rollout from the producer
            shards: list[Any] = [None] * world
            if rank == 0:
                produced, wait_s = producer.take(round_index)
                shards = [produced.rollout.shard(r, world) for r in range(world)]
                scattered = sum(len(pickle.dumps(shard)) for shard in shards[1:])
            # 2. every rank receives its shard only
            mine = shards[:1]
            if world > 1:
                dist.scatter_object_list(mine, shards if rank == 0 else None, src=0)
            # 3. experience and PPO updates on every rank
            started = time.perf_counter()
            stats, samples = learner.train(mine[0], round_index, tokenizer.pad_token_id)
            learner_s = time.perf_counter() - started
            started = time.perf_counter()
            if is_recorded(round_index, cfg.run.ledger_every, cfg.ppo.rl_rounds):
                by_rank = gather_to_rank0(samples, rank, world)
                if rank == 0 and produced.samples is not None:
                    ledger_rows = round_columns(produced, by_rank)
                    ledger.write(round_index, ledger_rows)
            ledger_s = time.perf_counter() - started
            # 4. the new weights to the producer; rank 0: metrics; every rank: the checkpoint
            metrics: dict[str, Any] = {"round": round_index}
            weights = learner.weights_to_sync()
            checkpoint_due = (
                round_index % cfg.run.checkpoint_every == 0 or round_index == last_round
            )
            eval_due = bool(cfg.ppo.eval_every) and (
                round_index % cfg.ppo.eval_every == 0 or round_index == last_round
            )
            if not (checkpoint_due or eval_due):
                hand_over(round_index, weights)
            with tempfile.TemporaryDirectory() as scratch:
                report_checkpoint = None
                if rank == 0:
                    if checkpoint_due or eval_due:  # a consistent cut of what is in flight
                        producer.drain(round_index)
                    if checkpoint_due and ledger is not None:  # no checkpoint ahead of it
                        started = time.perf_counter()
                        ledger.flush()
                        ledger_s += time.perf_counter() - started
                    timings = {
                        **produced.timings,
                        "wait_s": wait_s,
                        "learner_s": learner_s,
                        "ledger_s": ledger_s,
                    }
                    if ledger is not None:
                        timings["ledger_write_s"] = ledger.pop_write_s()
                    metrics.update(
                        round_metrics(produced, stats, timings, learner, scattered, round_index)
                    )
                    if stats["skipped_steps"]:
                        log.warning(
                            "round %d: %d PPO step(s) skipped (non-finite loss or gradient)",
                            round_index,
                            stats["skipped_steps"],
                        )
                    if eval_due:
                        started = time.perf_counter()
                        producer.push_now(weights, round_index)
                        metrics.update(run_eval(round_index)[0])
                        metrics["time/eval_s"] = time.perf_counter() - started
                    tracker.log(metrics, round_index, ledger_rows)
                    ledger_rows = None
                    if checkpoint_due:
                        if actors.critique is not None:
                            learner.critic_calls = actors.critique.calls
                        learner.in_flight = [item.to_data() for item in producer.in_flight()]
                if checkpoint_due:
                    extra = {}
                    if rank == 0:
                        extra["wandb_run_id"] = wandb_run_id(
                            cfg.run.output_dir, run_name(cfg), STAGE
                        )
                    if learner.save(Path(scratch), tokenizer, extra, weights):
                        report_checkpoint = Checkpoint.from_directory(scratch)
                if checkpoint_due or eval_due:
                    hand_over(round_index, weights)
                weights = None  # sharded: rank 0 holds one full copy at a time, not two
                ray.train.report(metrics, checkpoint=report_checkpoint)
    finally:
        if producer is not None:
            producer.close()
        if ledger is not None:
            ledger.close()
    if tracker is not None:
        tracker.close()


def rl_prompts(cfg: Config, records: Sequence[Record], tokenizer) -> list:
    """The prompts of ``records``, rendered in ``--token_format``, room left for the response."""
    return build_rl_prompts(
        records,
        tokenizer,
        cfg.data.token_format,
        cfg.data.target_score if cfg.data.use_decision_transformer else None,
        cfg.data.max_seq_length - cfg.rollout.max_new_tokens,
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
    from ray_adlf.actors.rl_actors import RLActors

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
    remote_code = cfg.model.trust_remote_code
    policy_path = merged_model_path(policy_path, remote_code)
    reward_model_path = reward_model_path and merged_model_path(reward_model_path, remote_code)
    if eval_reward_model_path:
        eval_reward_model_path = merged_model_path(eval_reward_model_path, remote_code)
    tokenizer = load_tokenizer(policy_path, cfg.model.trust_remote_code)
    prompts = rl_prompts(cfg, train_records, tokenizer)
    eval_prompts = []
    if cfg.ppo.eval_every:
        eval_prompts = rl_prompts(cfg, eval_records[: cfg.ppo.eval_prompts], tokenizer)
    actors = RLActors.start(cfg, policy_path, reward_model_path, eval_reward_model_path)
    loop_config = {
        "config": to_dict(cfg),
        "policy_path": policy_path,
        "prompts": prompts,
        "eval_prompts": eval_prompts,
        "actors": actors,
        "start_checkpoint": start_checkpoint,
    }
    try:
        result = make_torch_trainer(ppo_worker_loop, loop_config, cfg, STAGE, callbacks).fit()
    finally:
        actors.shutdown()
    return stage_summary(cfg, result, resumed, policy_path, reward_model_path)
