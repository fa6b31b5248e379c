"""Which stages a train command runs (``stages.plan_stages``) and how a failure is named."""

import pytest

from ray_adlf.config import Config, ConfigError
from ray_adlf.stages import COMPLETE_MARKER, StageFailed, plan_stages, root_cause


def config(tmp_path, **flags) -> Config:
    cfg = Config()
    cfg.run.output_dir = str(tmp_path)
    for dotted, value in flags.items():
        section, name = dotted.split("__")
        setattr(getattr(cfg, section), name, value)
    return cfg


def test_no_stage_flag_runs_the_whole_pipeline_and_says_so(tmp_path):
    plan = plan_stages(config(tmp_path, ppo__eval_every=0))
    assert plan.run == ["sft", "reward_model", "rlhf"]
    assert plan.notes == ["no stage flag: running the whole pipeline, SFT -> reward model -> RLHF"]


def test_rlhf_with_alpha_below_one_trains_the_reward_model_first(tmp_path):
    cfg = config(
        tmp_path, sft__run_sft=True, ppo__run_rlhf=True, rewards__adlf_alpha=0.3, ppo__eval_every=0
    )
    plan = plan_stages(cfg)
    assert plan.run == ["sft", "reward_model", "rlhf"]
    assert len(plan.notes) == 1 and "--adlf_alpha 0.3 < 1 needs a reward model" in plan.notes[0]


def test_rlhf_with_alpha_one_needs_no_reward_model(tmp_path):
    cfg = config(tmp_path, ppo__run_rlhf=True, rewards__adlf_alpha=1.0, ppo__eval_every=0)
    assert plan_stages(cfg).run == ["rlhf"]


def test_a_given_reward_model_is_used_as_it_is(tmp_path):
    cfg = config(
        tmp_path,
        ppo__run_rlhf=True,
        rewards__adlf_alpha=0.3,
        ppo__eval_every=0,
        reward_model__reward_model_path="/models/rm",
    )
    assert plan_stages(cfg).run == ["rlhf"]


def test_a_finished_reward_model_of_an_earlier_run_is_reused(tmp_path):
    (tmp_path / "reward_model").mkdir()
    (tmp_path / "reward_model" / COMPLETE_MARKER).write_text("")
    cfg = config(tmp_path, ppo__run_rlhf=True, rewards__adlf_alpha=0.3, ppo__eval_every=0)
    plan = plan_stages(cfg)
    assert plan.run == ["rlhf"] and "reuses the reward model" in plan.notes[0]


def test_an_unfinished_reward_model_directory_is_not_reused(tmp_path):
    (tmp_path / "reward_model").mkdir()
    (tmp_path / "reward_model" / "config.json").write_text("{}")
    cfg = config(tmp_path, ppo__run_rlhf=True, rewards__adlf_alpha=0.3, ppo__eval_every=0)
    assert plan_stages(cfg).run == ["reward_model", "rlhf"]


def test_held_out_evaluation_trains_an_evaluation_reward_model(tmp_path):
    cfg = config(tmp_path, ppo__run_rlhf=True, rewards__adlf_alpha=1.0, ppo__eval_every=4)
    assert plan_stages(cfg).run == ["reward_model", "eval_reward_model", "rlhf"]


def test_evaluation_against_a_given_reward_model_needs_a_disjoint_evaluation_model(tmp_path):
    cfg = config(
        tmp_path,
        ppo__run_rlhf=True,
        ppo__eval_every=4,
        reward_model__reward_model_path="/models/rm",
    )
    with pytest.raises(ConfigError, match="--eval_every: needs --eval_reward_model_path"):
        plan_stages(cfg)


def test_stage_flags_still_select_stages(tmp_path):
    assert plan_stages(config(tmp_path, sft__run_sft=True)).run == ["sft"]
    assert plan_stages(config(tmp_path, reward_model__run_reward_model=True)).run == [
        "reward_model"
    ]


def test_root_cause_unwraps_chained_errors_and_strips_terminal_colours():
    try:
        try:
            raise OSError("\x1b[31mdisk full\x1b[0m\nmore detail")
        except OSError as inner:
            raise RuntimeError("worker died") from inner
    except RuntimeError as outer:
        assert root_cause(outer) == "OSError: disk full"
        assert str(StageFailed("sft", outer)) == "sft stage failed: OSError: disk full"
