"""Search space: alpha, the objective weights, the KL settings and the PPO learning rate
(the union of the sibling spaces; needs ``--use_multi_objective``)."""

from pathlib import Path

from ray import tune

from ray_adlf.tune_plan import load_space

HERE = Path(__file__).parent


def space() -> dict:
    return {
        **load_space(HERE / "adlf_alpha.py"),
        **load_space(HERE / "objective_weights.py"),
        **load_space(HERE / "kl.py"),
        "ppo_learning_rate": tune.loguniform(1e-6, 1e-3),
    }
