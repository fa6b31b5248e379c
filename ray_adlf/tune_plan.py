"""The Ray-free half of ``ray-adlf tune``: the search flags, the space, the trials' shares.

Everything here runs before Ray starts (``cli.cmd_tune``), so a bad space file, a flag the
space cannot take or a trial that cannot fit the machine fails in seconds, before the SFT and
reward models are prepared. ``tune.py`` runs the search itself.

- ``load_space``: ``space()`` of a Python file; every key a config flag.
- ``apply_params``: a trial's values on the base config; the multi-objective weights divided
  by their sum, so they always sum to 1.
- ``concurrent_trials``/``plan_trials``: trials at once (one per 2 CPUs unless set) and each
  trial's CPU shares within ``cluster CPUs / concurrent`` (``cpu_plan.py``).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray_adlf.config import Config, ConfigError, from_dict, to_dict, validate
from ray_adlf.cpu_plan import RL_STAGE, check_fits, plan_resources, rl_actor_cpus, stage_cpus
from ray_adlf.rewards.catalog import WEIGHT_FLAGS

TRIAL_CPUS = 0.05  # the trial function itself: it waits on its trainer and forwards results
PBT_MUTABLE = ("adlf_alpha", "kl_target", *WEIGHT_FLAGS)
SECTIONS = {flag: section for section, values in to_dict(Config()).items() for flag in values}


@dataclass(frozen=True)
class TuneOptions:
    """The search flags of ``ray-adlf tune`` (``cli.add_tune_flags``)."""

    space: str
    num_samples: int = 4
    scheduler: str = "asha"
    search: str = "random"
    rounds_per_trial: int = 0
    perturbation_interval: int = 1
    max_concurrent_trials: int = 0


def load_space(path: str | Path) -> dict[str, Any]:
    """``space()`` of the Python file at ``path``; every key must be a config flag."""
    spec = importlib.util.spec_from_file_location(f"tune_space_{Path(path).stem}", path)
    if spec is None or not Path(path).is_file():
        raise ConfigError(f"--space: no Python file at {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    space = module.space()
    unknown = sorted(set(space) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"--space {path}: not config flags: {', '.join(unknown)}")
    return space


def check_search(cfg: Config, options: TuneOptions) -> dict[str, Any]:
    """The search space, checked against the flags (before Ray starts); returns it."""
    if options.search == "optuna" and options.scheduler == "pbt":
        raise ConfigError("--search optuna: PBT mutates trials itself; use --search random")
    space = load_space(options.space)
    if any(flag in space for flag in WEIGHT_FLAGS) and not cfg.rewards.use_multi_objective:
        raise ConfigError("--space: objective weights need --use_multi_objective")
    if options.scheduler == "pbt" and not any(flag in space for flag in PBT_MUTABLE):
        raise ConfigError(f"--scheduler pbt: the space has none of {', '.join(PBT_MUTABLE)}")
    return space


def apply_params(cfg: Config, params: dict[str, Any]) -> Config:
    """A copy of ``cfg`` with ``params`` (flag -> value) set; weights rescaled to sum to 1."""
    data = to_dict(cfg)
    for flag, value in params.items():
        data[SECTIONS[flag]][flag] = value
    total = sum(data["rewards"][flag] for flag in WEIGHT_FLAGS)
    if total <= 0:
        raise ConfigError(f"--space: every objective weight is 0 in {params}")
    for flag in WEIGHT_FLAGS:
        data["rewards"][flag] /= total
    return validate(from_dict(data))


def trial_bundles(cfg: Config) -> list[dict[str, float]]:
    """The trial's placement group: the trial function, then one bundle per actor it starts
    (Tune places the actors a trial creates in its placement group). ``cfg`` is planned."""
    return [{"CPU": TRIAL_CPUS}] + [{"CPU": cpus} for cpus in rl_actor_cpus(cfg)]


def concurrent_trials(requested: int, num_samples: int, cluster_cpus: float) -> int:
    """Trials run at once: ``--max_concurrent_trials``, else one per 2 CPUs (at least one),
    never more than there are trials."""
    auto = max(1, int(cluster_cpus // 2))
    return max(1, min(requested or auto, num_samples))


def plan_trials(cfg: Config, concurrent: int, cluster_cpus: float) -> Config:
    """The trials' config with every derived CPU share filled in for a budget of
    ``cluster_cpus / concurrent`` each; ConfigError when a trial cannot fit in it."""
    budget = cluster_cpus / concurrent
    trial = plan_resources(cfg, RL_STAGE, budget, reserved=TRIAL_CPUS)
    what = f"a trial's share of the cluster ({cluster_cpus:g} CPUs / {concurrent} at once)"
    check_fits(trial, RL_STAGE, budget, what, reserved=TRIAL_CPUS)
    return trial


def search_config(cfg: Config, rounds_per_trial: int) -> Config:
    """The trials' base config: RLHF for ``rounds_per_trial`` rounds, evaluated and
    checkpointed every ``--eval_every`` rounds (1 when unset)."""
    base = from_dict(to_dict(cfg))
    base.run.output_dir = str(Path(cfg.run.output_dir).resolve())
    base.ppo.run_rlhf = True
    base.ppo.rl_rounds = rounds_per_trial
    base.ppo.eval_every = base.ppo.eval_every or 1
    base.run.checkpoint_every = base.ppo.eval_every
    base.run.stop_after_steps = 0
    base.run.resume = False
    return validate(base)


@dataclass
class SearchPlan:
    """A checked search: the space, the trials' base config (``search_config``), the same with
    its CPU shares filled in for a trial, and how many trials run at once."""

    space: dict[str, Any]
    base: Config
    trial: Config
    concurrent: int

    def describe(self, num_samples: int) -> str:
        """One line: trials, concurrency and each trial's resources."""
        res = self.trial.resources
        critics = (
            f", critics {res.critic_num_cpus:g}" if self.trial.rewards.use_debate_reward else ""
        )
        return (
            f"tune: {num_samples} trials, {self.concurrent} at a time; each holds "
            f"{stage_cpus(self.trial, RL_STAGE, TRIAL_CPUS):g} CPUs (learner "
            f"{res.num_workers} x {res.learner_num_cpus:g}, rollout {res.rollout_num_cpus:g}, "
            f"reward {res.reward_num_cpus:g}{critics})"
        )


def plan_search(cfg: Config, options: TuneOptions, cluster_cpus: float) -> SearchPlan:
    """Check the space and the flags, and fit the trials into ``cluster_cpus``."""
    space = check_search(cfg, options)
    base = search_config(cfg, options.rounds_per_trial or cfg.ppo.rl_rounds)
    concurrent = concurrent_trials(options.max_concurrent_trials, options.num_samples, cluster_cpus)
    return SearchPlan(space, base, plan_trials(base, concurrent, cluster_cpus), concurrent)
