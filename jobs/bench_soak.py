"""Soak: many RL rounds on the tiny model while rollout, reward and critique actors are killed.

Runs the RLHF stage as ``ray-adlf train --run_rlhf`` does (``train.ppo.run_rlhf``: a RolloutPool,
a RewardPool and a CritiquePool of Ray actors, a Ray Train learner that syncs its weights to the
rollout engines and the critic on the policy every round) from the tiny model on the bundled
sample, with the internal rewards only (``--adlf_alpha 1``: coherence, length, debate), so no
reward model is trained first. Beside it a killer thread SIGKILLs the process of a random live
RolloutActor, RewardActor or CritiqueActor every ``--kill_every_s`` seconds (uniform in 0.5x to
1.5x); Ray restarts each (``--actor_max_restarts`` is set high for the soak) and the pools retry
the call it was serving.

Printed: rounds done, kills by actor kind, samples expected (``ppo_batch_size x
num_samples_per_prompt`` a round), samples the learner got (the ``samples`` metric of every
round in metrics.jsonl), lost and counted twice (both must be 0), and the largest round mean of
``|engine logprob - learner logprob|`` over the sampled tokens (a restarted engine serving stale
weights would show here).

Run: ``python jobs/bench_soak.py --rounds 30 --kill_every_s 4``.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import psutil

ACTOR_KINDS = ("RolloutActor", "RewardActor", "CritiqueActor")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--kill_every_s", type=float, default=4.0)
    parser.add_argument("--batch", type=int, default=8, help="prompts a round")
    parser.add_argument("--samples_per_prompt", type=int, default=2)
    parser.add_argument("--cpus", type=float, default=4.0, help="CPUs of the local Ray cluster")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def live_actors() -> list[tuple[str, psutil.Process]]:
    """(kind, process) of every rollout, reward and critique actor of this driver's cluster."""
    found = []
    for process in psutil.Process().children(recursive=True):
        try:
            title = " ".join(process.cmdline())
        except psutil.Error:
            continue
        for kind in ACTOR_KINDS:
            if title.startswith(f"ray::{kind}"):
                found.append((kind, process))
    return found


def kill_at_random(every_s: float, seed: int, stop: threading.Event, kills: Counter) -> None:
    """Until ``stop``: sleep ``every_s`` (0.5x to 1.5x), SIGKILL one random live actor."""
    chooser = random.Random(seed)
    while not stop.wait(every_s * chooser.uniform(0.5, 1.5)):
        actors = live_actors()
        if not actors:
            continue
        kind, process = chooser.choice(actors)
        try:
            process.kill()
        except psutil.Error:
            continue
        kills[kind] += 1


def soak_config(args: argparse.Namespace, output_dir: Path):
    from ray_adlf.config import Config, validate

    cfg = Config()
    cfg.run.output_dir = str(output_dir)
    cfg.run.seed = args.seed
    cfg.run.checkpoint_every = 10
    cfg.data.max_seq_length = 96
    cfg.rollout.rollout_engine = "hf"
    cfg.rollout.max_new_tokens = 12
    cfg.rewards.adlf_alpha = 1.0
    cfg.rewards.use_coherence_reward = True
    cfg.rewards.use_length_penalty = True
    cfg.rewards.use_debate_reward = True
    cfg.debate.num_critics = 2
    cfg.debate.debate_rounds = 1
    cfg.debate.critique_max_new_tokens = 8
    cfg.ppo.run_rlhf = True
    cfg.ppo.rl_rounds = args.rounds
    cfg.ppo.advantage = "rloo"
    cfg.ppo.ppo_batch_size = args.batch
    cfg.ppo.num_samples_per_prompt = args.samples_per_prompt
    cfg.ppo.ppo_minibatch_size = args.batch * args.samples_per_prompt
    cfg.ppo.eval_every = 0
    cfg.resources.num_rollout_workers = 2
    cfg.resources.num_reward_workers = 2
    cfg.resources.actor_max_restarts = 10_000
    return validate(cfg)


def main() -> None:
    args = parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import ray

    from ray_adlf.data.sample import sample_path
    from ray_adlf.data.validate import read_records
    from ray_adlf.tracking import METRICS_FILE, read_metrics
    from ray_adlf.train.ppo import STAGE, run_rlhf

    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    records = read_records(sample_path()).records
    kills: Counter = Counter()
    stop = threading.Event()
    with tempfile.TemporaryDirectory() as scratch:
        cfg = soak_config(args, Path(scratch))
        killer = threading.Thread(
            target=kill_at_random, args=(args.kill_every_s, args.seed, stop, kills), daemon=True
        )
        started = time.monotonic()
        killer.start()
        try:
            summary = run_rlhf(cfg, records, "tiny", None)
        finally:
            stop.set()
            killer.join()
        wall_s = time.monotonic() - started
        rows = [r for r in read_metrics(Path(scratch) / METRICS_FILE) if r["stage"] == STAGE]
    ray.shutdown()
    expected = args.batch * args.samples_per_prompt
    got = [row["samples"] for row in rows]
    lost = sum(max(0, expected - n) for n in got) + expected * (args.rounds - len(got))
    doubled = sum(max(0, n - expected) for n in got)
    mismatch = max((row["logprob_mismatch"] for row in rows), default=float("nan"))
    print(f"rounds done          {len(rows)} of {args.rounds} (complete: {summary['complete']})")
    print(
        f"kills survived       {sum(kills.values())} "
        f"({', '.join(f'{kind} {kills[kind]}' for kind in ACTOR_KINDS)})"
    )
    print(f"samples expected     {expected * args.rounds}")
    print(f"samples trained on   {sum(got)}")
    print(f"samples lost         {lost}")
    print(f"samples counted twice {doubled}")
    print(f"max logprob gap      {mismatch:.2e} (largest round mean, engine vs learner)")
    print(f"wall time            {wall_s:.0f} s")


if __name__ == "__main__":
    main()
