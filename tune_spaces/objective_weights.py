"""Search space: the multi-objective weights (needs ``--use_multi_objective``).

Raw weights are sampled uniformly; the trial divides all eight weights by their sum
(``ray_adlf.tune.apply_params``), so the weights it trains with always sum to 1.
"""

from ray import tune


def space() -> dict:
    return {
        "quality_weight": tune.uniform(0.05, 1.0),
        "fluency_weight": tune.uniform(0.0, 1.0),
        "faithfulness_weight": tune.uniform(0.0, 1.0),
        "coherence_weight": tune.uniform(0.0, 1.0),
        "length_weight": tune.uniform(0.0, 1.0),
        "debate_weight": tune.uniform(0.0, 1.0),
        "plugin_weight": tune.uniform(0.0, 1.0),
        "reward_url_weight": tune.uniform(0.0, 1.0),
    }
