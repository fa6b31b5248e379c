"""The pure parts of the Tune wiring: spaces, applying a trial's values, resource bundles."""

from pathlib import Path

import pytest

from ray_adlf.config import Config, ConfigError
from ray_adlf.tune_plan import (
    WEIGHT_FLAGS,
    TuneOptions,
    apply_params,
    concurrent_trials,
    load_space,
    plan_search,
    plan_trials,
    trial_bundles,
)

SPACES = Path(__file__).resolve().parents[2] / "tune_spaces"


@pytest.mark.parametrize("name", ["adlf_alpha", "objective_weights", "kl", "full"])
def test_shipped_spaces_name_config_flags(name):
    space = load_space(SPACES / f"{name}.py")
    assert space
    if name in ("objective_weights", "full"):
        assert set(WEIGHT_FLAGS) & set(space)


def test_a_space_with_an_unknown_flag_or_no_file_is_refused(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def space():\n    return {'alpha': 0.5}\n")
    with pytest.raises(ConfigError, match="not config flags: alpha"):
        load_space(bad)
    with pytest.raises(ConfigError, match="no Python file"):
        load_space(tmp_path / "missing.py")


def test_apply_params_sets_values_and_weights_sum_to_one():
    cfg = apply_params(Config(), {"adlf_alpha": 0.7, "kl_target": 2.5, "fluency_weight": 3.0})
    assert cfg.rewards.adlf_alpha == 0.7 and cfg.ppo.kl_target == 2.5
    weights = [getattr(cfg.rewards, flag) for flag in WEIGHT_FLAGS]
    assert sum(weights) == pytest.approx(1.0)
    # fluency 3.0 against the other defaults (0.4 + 0.2 + 0.1 + 0.05 + 0.05 + 0.1 + 0.1 = 1.0)
    assert cfg.rewards.fluency_weight == pytest.approx(3.0 / 4.0)


def test_trial_bundles_hold_one_bundle_per_actor():
    cfg = Config()
    cfg.ppo.eval_every = 1
    cfg.rewards.use_debate_reward = True
    cfg.debate.num_critics = 3
    planned = plan_trials(cfg, concurrent=2, cluster_cpus=8)
    bundles = trial_bundles(planned)
    # trial function, 1 rollout, 1 reward, 1 evaluation reward, 1 actor for the 3 critics
    assert len(bundles) == 5
    # a 4-CPU share: learner 2, trial 0.05, the 4 actors split the remaining 1.95: 0.48 each
    assert bundles[0] == {"CPU": 0.05} and bundles[1:] == [{"CPU": 0.48}] * 4
    assert planned.resources.learner_num_cpus == 2.0


def test_concurrent_trials_default_to_one_per_two_cpus():
    assert concurrent_trials(0, num_samples=8, cluster_cpus=2) == 1
    assert concurrent_trials(0, num_samples=8, cluster_cpus=32) == 8
    assert concurrent_trials(0, num_samples=3, cluster_cpus=32) == 3
    assert concurrent_trials(5, num_samples=8, cluster_cpus=2) == 5


def test_a_trial_that_cannot_fit_its_share_is_refused():
    cfg = Config()
    cfg.resources.rollout_num_cpus = 1.5
    with pytest.raises(
        ConfigError, match=r"needs 2.56 CPUs \(learner 1, actors 1.51\) but a trial's share"
    ):
        plan_trials(cfg, concurrent=1, cluster_cpus=2)


def test_the_issue_command_with_default_resources_fits_two_cpus():
    """``ray-adlf tune --space tune_spaces/adlf_alpha.py --num_samples 2 --scheduler asha``."""
    options = TuneOptions(str(SPACES / "adlf_alpha.py"), num_samples=2, scheduler="asha")
    plan = plan_search(Config(), options, cluster_cpus=2)
    # one trial at a time; learner 1, rollout + reward + eval reward share 2 - 1 - 0.05 = 0.95
    assert plan.concurrent == 1
    assert plan.trial.resources.learner_num_cpus == 1.0
    assert trial_bundles(plan.trial) == [{"CPU": 0.05}] + [{"CPU": 0.31}] * 3
    assert "2 trials, 1 at a time; each holds 1.98 CPUs" in plan.describe(2)
