import math

import numpy as np
import pytest

from ray_adlf.config import Config
from ray_adlf.rewards.combine import (
    RewardCombiner,
    RunningMeanStd,
    adlf_reward,
    rank_standardize,
)
from ray_adlf.rewards.scorer import make_combiner

WEIGHTS = {"external": 0.4, "coherence": 0.1, "fluency": 0.2, "faithfulness": 0.2}
PARTS = {
    "external": np.array([0.8, 0.2]),
    "coherence": np.array([0.5, 1.0]),
    "fluency": np.array([0.1, 0.3]),
}


def combiner(**overrides) -> RewardCombiner:
    settings = dict(
        alpha=0.25,
        multi_objective=False,
        weights=WEIGHTS,
        objective_normalization="running",
        normalize_rewards=False,
        reward_clip=0.0,
    )
    settings.update(overrides)
    return RewardCombiner(**settings)


def test_adlf_formula_exact():
    got = adlf_reward(np.array([1.0, 0.0, 0.6]), np.array([0.0, 1.0, 0.2]), alpha=0.3)
    assert got == pytest.approx([0.7, 0.3, 0.7 * 0.6 + 0.3 * 0.2])
    assert adlf_reward(np.array([0.9]), np.array([0.1]), 0.0) == pytest.approx([0.9])
    assert adlf_reward(np.array([0.9]), np.array([0.1]), 1.0) == pytest.approx([0.1])
    with pytest.raises(ValueError):
        adlf_reward(np.array([0.0]), np.array([0.0]), 1.5)


def test_plain_mode_internal_is_the_mean_of_enabled_signals():
    batch = combiner().combine(PARTS)
    # internal = mean(coherence, fluency) = [0.3, 0.65]
    assert batch.parts["internal"] == pytest.approx([0.3, 0.65])
    # reward = 0.75 * [0.8, 0.2] + 0.25 * [0.3, 0.65]
    assert batch.rewards == pytest.approx([0.675, 0.3125])
    assert batch.parts["reward_raw"] == pytest.approx([0.675, 0.3125])
    assert "z_external" not in batch.parts


def test_multi_objective_running_normalisation_exact():
    c = combiner(multi_objective=True)
    first = c.combine(PARTS)
    # two values per objective: z = +-1 (up to eps); external [1, -1], coherence and fluency [-1, 1]
    assert first.parts["z_external"] == pytest.approx([1, -1], abs=1e-6)
    assert first.parts["z_fluency"] == pytest.approx([-1, 1], abs=1e-6)
    assert first.parts["external_term"] == pytest.approx([0.4, -0.4], abs=1e-6)
    assert first.parts["internal"] == pytest.approx([-0.3, 0.3], abs=1e-6)  # 0.1 z_coh + 0.2 z_flu
    assert first.rewards == pytest.approx([0.225, -0.225], abs=1e-6)  # .75 * .4 - .25 * .3
    second = c.combine(
        {
            "external": np.array([0.5, 1.1]),
            "coherence": np.array([1.0, 1.0]),
            "fluency": np.array([0.2, 0.2]),
        }
    )
    # running stats over all four external values [0.8, 0.2, 0.5, 1.1]: mean .65, var .1125
    assert second.parts["z_external"] == pytest.approx(
        [(0.5 - 0.65) / math.sqrt(0.1125), (1.1 - 0.65) / math.sqrt(0.1125)], abs=1e-6
    )
    assert c.objective_stats["external"].count == 4


def test_a_weight_means_what_it_says_whatever_the_scale():
    # fluency 100x smaller in scale than coherence: after normalising, equal weights give
    # equal influence, so two samples that swap their ranks tie (up to eps in the variance).
    parts = {"coherence": np.array([0.0, 1.0]), "fluency": np.array([0.01, 0.0])}
    c = combiner(alpha=1.0, multi_objective=True, weights={"coherence": 1.0, "fluency": 1.0})
    assert c.combine(parts).rewards == pytest.approx([0.0, 0.0], abs=1e-3)
    plain = combiner(alpha=1.0).combine(parts).rewards  # without: coherence dominates
    assert plain[1] - plain[0] > 0.4


def test_rank_standardisation_exact_with_ties():
    assert rank_standardize(np.array([3.0, 1.0, 2.0, 2.0])) == pytest.approx(
        np.array([1.5, -1.5, 0.0, 0.0]) / math.sqrt(1.25)
    )
    assert rank_standardize(np.array([7.0])) == pytest.approx([0.0])
    c = combiner(multi_objective=True, objective_normalization="rank")
    batch = c.combine(PARTS)
    assert batch.parts["z_external"] == pytest.approx([1.0, -1.0])  # ranks [1, 0] -> +-0.5/0.5
    assert c.objective_stats == {}


def test_reward_normalisation_and_clipping():
    c = combiner(normalize_rewards=True, reward_clip=0.5)
    batch = c.combine(PARTS)
    assert batch.parts["reward_raw"] == pytest.approx([0.675, 0.3125])
    assert batch.rewards == pytest.approx([0.5, -0.5])  # whitened to +-1, clipped at 0.5
    assert c.reward_stats.count == 2
    assert c.reward_stats.mean == pytest.approx((0.675 + 0.3125) / 2)


def test_state_dict_round_trip_continues_identically():
    a = combiner(multi_objective=True, normalize_rewards=True)
    a.combine(PARTS)
    b = combiner(multi_objective=True, normalize_rewards=True)
    b.load_state_dict(a.state_dict())
    nxt = {
        "external": np.array([0.1, 0.9, 0.4]),
        "coherence": np.array([0.2, 0.3, 0.9]),
        "fluency": np.array([0.5, 0.1, 0.2]),
    }
    assert b.combine(nxt).rewards == pytest.approx(a.combine(nxt).rewards)
    assert b.state_dict() == a.state_dict()


def test_running_mean_std_merges_batches_like_one():
    stats = RunningMeanStd()
    data = np.array([1.0, 4.0, 2.0, 8.0, 5.0])
    stats.update(data[:2])
    stats.update(data[2:])
    assert stats.mean == pytest.approx(data.mean()) and stats.var == pytest.approx(data.var())


def test_missing_parts_are_clear_errors():
    with pytest.raises(ValueError, match="external"):
        combiner().combine({"coherence": np.array([0.5])})
    with pytest.raises(ValueError, match="internal signal"):
        combiner().combine({"external": np.array([0.5])})
    assert combiner(alpha=0.0).combine({"external": np.array([0.5])}).rewards == pytest.approx(
        [0.5]
    )
    assert combiner(alpha=1.0).combine({"length": np.array([0.5])}).rewards == pytest.approx([0.5])


def test_combiner_from_config_flags():
    cfg = Config()
    cfg.rewards.adlf_alpha = 0.7
    cfg.rewards.use_multi_objective = True
    cfg.rewards.fluency_weight = 0.9
    c = make_combiner(cfg.rewards)
    assert c.alpha == 0.7 and c.multi_objective and c.weights["fluency"] == 0.9
    assert c.weights["external"] == cfg.rewards.quality_weight
