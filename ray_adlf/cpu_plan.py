"""How a stage's CPUs are split between its learner workers and its actors (pure arithmetic).

A CPU count of 0 in the ``resources`` section means "derive it". Given the CPUs a stage may
hold (the cluster's, or a Tune trial's share of it), ``plan_resources`` fills those in:

- SFT and reward-model stages start only their Ray Train workers: each takes ``budget / W``
  (W = ``--num_workers``).
- The RL stage starts actors too (rollout, reward, the evaluation reward actor with
  ``--eval_every``, the critique actors with the debate (``critic_actors``), the reference actor
  with ``--reference_placement actor`` when it is used, sized like a reward actor). CPU learners
  take half of the budget, ``budget / (2 W)`` each (GPU learners take Ray's default of 1 CPU each); the actors whose share is 0 split what
  is left after the learners, the explicitly sized actors and ``reserved`` (a Tune trial's own
  process) evenly.

Why half for the learner: the phases of a round run one after another, so no split is ever
fully busy; the learner's forward/backward is the heaviest phase, the actors' work (generation,
reward forwards) comes next. Shares are rounded down to 0.01 CPU.

Threads: a round's phases run one after another (generate; reward and debate together; the
learner), so each phase may use every core the stage holds, not only its Ray share:
``phase_threads`` gives each process of a phase ``floor(min(stage CPUs, machine cores) /
processes in the phase)`` threads, at least 1 (the processes of a phase may share a machine).
With 2 cores, one learner, one rollout and one reward actor, each uses 2 threads in its turn;
Ray's own default (``OMP_NUM_THREADS`` = the process's CPU share, 1 here) would leave one core
idle in every phase. With ``--async_rollout`` the learner trains while the producer samples
and scores the next round, so the cores are halved between the two sides: each phase counts
``usable / 2`` cores (2 cores: 1 thread each), which keeps the two sides from fighting over
the same cores (threads that outnumber cores slow every one of them).

``check_fits`` refuses, naming the flags, a plan whose parts add up to more than the budget
(Ray would otherwise wait for resources forever).
"""

from __future__ import annotations

import math
import os

from ray_adlf.config import Config, ConfigError, from_dict, to_dict, uses_reference

RL_STAGE = "rlhf"


def _floor(cpus: float) -> float:
    return math.floor(cpus * 100 + 1e-9) / 100


def critic_actors(cfg: Config) -> int:
    """CritiqueActors the debate starts (``actors.critique.critic_groups``): one for the local
    critics, which share one model, or one per HTTP critic; one more for the self-critique
    critic unless the critics already run on the policy."""
    if not cfg.rewards.use_debate_reward:
        return 0
    debate = cfg.debate
    count = debate.num_critics if debate.critic_engine == "http" else int(debate.num_critics > 0)
    shares_policy = debate.critic_engine == "policy" and debate.num_critics > 0
    return count + int(cfg.sft.use_self_critique and not shares_policy)


def rl_actor_shares(cfg: Config) -> list[tuple[str, float]]:
    """``(resource flag, CPUs)`` of every actor the RL stage starts; 0 = derive it."""
    res = cfg.resources
    actors = [("rollout_num_cpus", res.rollout_num_cpus)] * res.num_rollout_workers
    reward_actors = res.num_reward_workers + int(cfg.ppo.eval_every > 0)
    actors += [("reward_num_cpus", res.reward_num_cpus)] * reward_actors
    actors += [("critic_num_cpus", res.critic_num_cpus)] * critic_actors(cfg)
    if cfg.ppo.reference_placement == "actor" and uses_reference(cfg):  # a reward actor's size
        actors.append(("reward_num_cpus", res.reward_num_cpus))
    return actors


def learner_cpus(cfg: Config) -> float:
    """CPUs all learner workers hold together (Ray's default 1 CPU each on GPUs)."""
    res = cfg.resources
    return float(res.num_workers) if res.use_gpu else res.num_workers * res.learner_num_cpus


def plan_resources(cfg: Config, stage: str, budget: float, reserved: float = 0.0) -> Config:
    """A copy of ``cfg`` whose zero CPU shares are filled in for ``stage`` (module docstring)."""
    planned = from_dict(to_dict(cfg))
    res = planned.resources
    if stage != RL_STAGE:
        if not res.learner_num_cpus:
            res.learner_num_cpus = _floor(budget / res.num_workers)
        return planned
    if not res.learner_num_cpus:
        res.learner_num_cpus = _floor(budget / (2 * res.num_workers))
    actors = rl_actor_shares(planned)
    fixed = sum(cpus for _, cpus in actors)
    derived = sum(1 for _, cpus in actors if cpus == 0)
    if derived:
        share = _floor((budget - reserved - learner_cpus(planned) - fixed) / derived)
        for flag in ("rollout_num_cpus", "reward_num_cpus", "critic_num_cpus"):
            if getattr(res, flag) == 0:
                setattr(res, flag, max(share, 0.01))
    return planned


def rl_actor_cpus(cfg: Config) -> list[float]:
    """CPUs of each RL-stage actor of a planned config."""
    return [getattr(cfg.resources, flag) for flag, _ in rl_actor_shares(cfg)]


def stage_cpus(cfg: Config, stage: str, reserved: float = 0.0) -> float:
    """CPUs a planned stage holds in all: learners, actors (RL) and ``reserved``."""
    actors = sum(rl_actor_cpus(cfg)) if stage == RL_STAGE else 0.0
    return learner_cpus(cfg) + actors + reserved


def phase_threads(cfg: Config) -> dict[str, int]:
    """Threads per process of each RL phase (module docstring) of a planned ``cfg``:
    ``learner`` (each rank), ``rollout`` (each RolloutActor), ``reward`` (each RewardActor and
    CritiqueActor: scoring and the debate overlap) and ``single`` (the evaluation reward actor
    and the reference actor, which run alone)."""
    res = cfg.resources
    processes = {
        "learner": res.num_workers,
        "rollout": res.num_rollout_workers,
        "reward": res.num_reward_workers + critic_actors(cfg),
        "single": 1,
    }
    usable = min(stage_cpus(cfg, RL_STAGE), os.cpu_count() or 1)
    if cfg.ppo.async_rollout:  # the learner and the producer run at once
        usable /= 2
    return {phase: max(1, math.floor(usable / count + 1e-9)) for phase, count in processes.items()}


def check_fits(cfg: Config, stage: str, budget: float, what: str, reserved: float = 0.0) -> None:
    """ConfigError naming the flags when a planned stage needs more than ``budget`` CPUs."""
    needed = stage_cpus(cfg, stage, reserved)
    if needed > budget + 1e-9:
        actors = needed - learner_cpus(cfg) - reserved
        raise ConfigError(
            f"--num_workers/--*_num_cpus: the {stage} stage needs {needed:g} CPUs (learner "
            f"{learner_cpus(cfg):g}, actors {actors:g}) but {what} has {budget:g}: lower "
            "--learner_num_cpus, --rollout_num_cpus, --reward_num_cpus or --critic_num_cpus "
            "(0 derives them), or use fewer workers"
        )


def thread_env(threads: float) -> dict[str, dict[str, str]]:
    """A Ray ``runtime_env`` running a process with ``floor(threads)`` (at least 1) threads."""
    return {"env_vars": {"OMP_NUM_THREADS": str(max(1, math.floor(threads)))}}
