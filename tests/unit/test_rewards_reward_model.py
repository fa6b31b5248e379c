import numpy as np
import pytest

from ray_adlf.data.records import Turn
from ray_adlf.models.loading import load_tokenizer
from ray_adlf.rewards.reward_model import (
    mae,
    pairwise_accuracy,
    pearson,
    regression_metrics,
    reward_model_ids,
    spearman,
)


def test_mae_and_pearson_by_hand():
    assert mae(np.array([1.0, 2.0, 4.0]), np.array([1.5, 2.0, 3.0])) == pytest.approx(0.5)
    # p - mean = [-1, 0, 1], t - mean = [-2, 0, 2] -> perfectly correlated
    assert pearson(np.array([1.0, 2.0, 3.0]), np.array([0.0, 2.0, 4.0])) == pytest.approx(1.0)
    # p = [1, 2, 3], t = [1, 3, 2]: cov sum 1, |p| = sqrt 2, |t| = sqrt 2 -> 0.5
    assert pearson(np.array([1.0, 2.0, 3.0]), np.array([1.0, 3.0, 2.0])) == pytest.approx(0.5)
    assert pearson(np.array([1.0, 1.0]), np.array([0.0, 5.0])) == 0.0  # constant -> 0


def test_spearman_uses_ranks():
    # monotone but not linear -> spearman 1, pearson < 1
    p, t = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 10.0, 100.0, 1000.0])
    assert spearman(p, t) == pytest.approx(1.0) and pearson(p, t) < 0.9
    assert spearman(p, -t) == pytest.approx(-1.0)
    # ties share the average rank: t ranks [0.5, 0.5, 2]
    assert spearman(np.array([1.0, 2.0, 3.0]), np.array([5.0, 5.0, 7.0])) == pytest.approx(
        pearson(np.array([0.0, 1.0, 2.0]), np.array([0.5, 0.5, 2.0]))
    )


def test_pairwise_accuracy_by_hand():
    t = np.array([1.0, 2.0, 3.0, 3.0])  # 5 pairs with different targets (the 3-3 pair is skipped)
    assert pairwise_accuracy(np.array([0.1, 0.2, 0.3, 0.0]), t) == pytest.approx(3 / 5)
    # a tie in the prediction counts one half: pairs (0,1) tie, rest right -> 4.5 / 5
    assert pairwise_accuracy(np.array([0.1, 0.1, 0.3, 0.4]), t) == pytest.approx(4.5 / 5)
    assert pairwise_accuracy(np.array([1.0, 2.0]), np.array([3.0, 3.0])) == 0.5
    metrics = regression_metrics(np.array([1.0, 2.0]), np.array([1.0, 2.0]))
    assert metrics == {"mae": 0.0, "pearson": 1.0, "spearman": 1.0, "pairwise_accuracy": 1.0}


def test_reward_model_input_keeps_the_response_end():
    tokenizer = load_tokenizer("tiny")
    context = [Turn("user", "word " * 200)]
    ids = reward_model_ids(context, "The answer is 4.", tokenizer, "standard", 32)
    assert len(ids) == 32
    assert tokenizer.decode(ids).endswith("The answer is 4.<|end|>\n")
