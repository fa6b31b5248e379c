"""The CPU split of a stage (``cpu_plan``), checked against sums worked out by hand."""

import pytest

from ray_adlf.config import Config, ConfigError
from ray_adlf.cpu_plan import (
    check_fits,
    phase_threads,
    plan_resources,
    rl_actor_cpus,
    stage_cpus,
)


def rl_config(**resources) -> Config:
    cfg = Config()
    cfg.ppo.eval_every = 0
    for name, value in resources.items():
        setattr(cfg.resources, name, value)
    return cfg


def test_sft_workers_split_the_whole_budget():
    cfg = rl_config(num_workers=2)
    planned = plan_resources(cfg, "sft", budget=2.0)
    assert planned.resources.learner_num_cpus == 1.0
    assert cfg.resources.learner_num_cpus == 0.0  # the input is left as it was


def test_rl_on_two_cpus_gives_the_learner_half_and_splits_the_rest_over_the_actors():
    # 1 learner: 2 / 2 = 1 CPU; actors: rollout + reward (no debate, no eval) = (2 - 1) / 2 each
    planned = plan_resources(rl_config(), "rlhf", budget=2.0)
    assert planned.resources.learner_num_cpus == 1.0
    assert rl_actor_cpus(planned) == [0.5, 0.5]
    assert stage_cpus(planned, "rlhf") == 2.0


def test_rl_with_debate_and_evaluation_counts_every_actor():
    cfg = rl_config()
    cfg.ppo.eval_every = 4
    cfg.rewards.use_debate_reward = True
    cfg.debate.num_critics = 2
    cfg.sft.use_self_critique = True
    # actors: rollout, reward, eval reward, the 2 reference critics' actor, the self-critic's
    # actor = 5 sharing 8 - 4 = 4 CPUs -> 0.8 each
    planned = plan_resources(cfg, "rlhf", budget=8.0)
    assert planned.resources.learner_num_cpus == 4.0
    assert rl_actor_cpus(planned) == [0.8] * 5


def test_explicit_shares_are_kept_and_the_derived_ones_share_what_is_left():
    cfg = rl_config(rollout_num_cpus=1.5)
    # learner 4 / 2 = 2; reward actor gets 4 - 2 - 1.5 - 0.5 reserved = 0
    planned = plan_resources(cfg, "rlhf", budget=4.0, reserved=0.5)
    assert planned.resources.rollout_num_cpus == 1.5
    assert planned.resources.reward_num_cpus == 0.01  # never 0: Ray would read 0 as "any"
    with pytest.raises(ConfigError, match="needs 4.01 CPUs"):
        check_fits(planned, "rlhf", 4.0, "the trial", reserved=0.5)


def test_shares_round_down_to_a_hundredth():
    planned = plan_resources(rl_config(num_workers=3), "rlhf", budget=2.0)
    assert planned.resources.learner_num_cpus == 0.33  # 2 / 6 = 0.333...
    assert stage_cpus(planned, "rlhf") <= 2.0


def test_an_oversized_plan_names_the_flags():
    planned = plan_resources(rl_config(learner_num_cpus=2.0, rollout_num_cpus=1.0), "rlhf", 2.0)
    with pytest.raises(ConfigError, match="--num_workers/--\\*_num_cpus: the rlhf stage needs"):
        check_fits(planned, "rlhf", 2.0, "the Ray cluster")


def test_gpu_learners_hold_one_cpu_each():
    planned = plan_resources(rl_config(use_gpu=True, num_workers=2), "rlhf", budget=8.0)
    # learners: 2 x Ray's default 1 CPU; actors: (8 - 2) / 2 = 3 each
    assert rl_actor_cpus(planned) == [3.0, 3.0]


def test_each_phase_uses_the_stage_cores_in_its_turn(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    # 2 CPUs: the learner, the rollout actor and the reward actor each get both cores in turn.
    planned = plan_resources(rl_config(), "rlhf", budget=2.0)
    assert phase_threads(planned) == {"learner": 2, "rollout": 2, "reward": 2, "single": 2}
    # 8 CPUs held on a 2-core machine: only 2 cores to split. 4 learner ranks and the scoring
    # phase (the reward actor, the 2 reference critics' actor, the self-critic's actor) get 1
    # thread each, never 2 x 4 on 2 cores.
    cfg = rl_config()
    cfg.rewards.use_debate_reward = True
    cfg.debate.num_critics = 2
    cfg.sft.use_self_critique = True
    cfg.resources.num_workers = 4
    planned = plan_resources(cfg, "rlhf", budget=8.0)
    assert phase_threads(planned) == {"learner": 1, "rollout": 2, "reward": 1, "single": 2}
    # 64 cores: the 8 CPUs held split as 8 // 4 = 2, 8, 8 // 3 = 2, 8.
    monkeypatch.setattr("os.cpu_count", lambda: 64)
    assert phase_threads(planned) == {"learner": 2, "rollout": 8, "reward": 2, "single": 8}


def test_with_async_rollout_the_learner_and_the_producer_halve_the_cores(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    cfg = rl_config()
    cfg.ppo.async_rollout = True
    planned = plan_resources(cfg, "rlhf", budget=2.0)
    assert phase_threads(planned) == {"learner": 1, "rollout": 1, "reward": 1, "single": 1}
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    cfg.resources.num_workers = cfg.resources.num_rollout_workers = 2
    planned = plan_resources(cfg, "rlhf", budget=12.0)  # 12 CPUs of 16 cores: 6 a side
    assert phase_threads(planned) == {"learner": 3, "rollout": 3, "reward": 6, "single": 6}
