"""The pure parts of the Tune wiring: spaces, applying a trial's values, resource bundles."""

from pathlib import Path

import pytest

from ray_adlf.config import Config, ConfigError
from ray_adlf.tune import WEIGHT_FLAGS, apply_params, load_space, trial_bundles

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
    bundles = trial_bundles(cfg)
    # trial function, 1 rollout, 1 reward, 1 evaluation reward, 3 critics
    assert len(bundles) == 7
    assert bundles[1] == {"CPU": cfg.rollout.rollout_num_cpus}
