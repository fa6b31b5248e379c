"""Search space: the KL penalty (``--use_dynamic_kl`` makes ``kl_target``/``kl_horizon`` count)."""

from ray import tune


def space() -> dict:
    return {
        "kl_target": tune.loguniform(0.5, 20.0),
        "init_kl_coef": tune.loguniform(1e-3, 0.5),
        "kl_horizon": tune.choice([1000, 10000, 100000]),
    }
