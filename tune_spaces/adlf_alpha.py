"""Search space: the ADLF mix, ``reward = (1 - alpha) * external + alpha * internal``."""

from ray import tune


def space() -> dict:
    return {"adlf_alpha": tune.uniform(0.0, 1.0)}
