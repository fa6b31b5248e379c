"""Evaluation statistics against hand-computed values."""

import math

import pytest

from ray_adlf.algo.evaluation import mean_and_se, paired_difference


def test_mean_and_standard_error_by_hand():
    # x = 1, 2, 3, 6: mean 3; deviations -2 -1 0 3 -> squares 4 1 0 9 = 14; s^2 = 14 / 3;
    # se = sqrt(14 / 3 / 4) = sqrt(7 / 6)
    mean, se = mean_and_se([1.0, 2.0, 3.0, 6.0])
    assert mean == pytest.approx(3.0) and se == pytest.approx(math.sqrt(7 / 6))
    assert mean_and_se([4.0]) == (4.0, 0.0)
    with pytest.raises(ValueError):
        mean_and_se([])


def test_paired_difference_removes_the_shared_prompt_spread():
    before = [1.0, 3.0, 5.0, 7.0]  # a wide spread between prompts
    after = [1.5, 3.5, 5.5, 7.75]  # d = 0.5, 0.5, 0.5, 0.75: mean 0.5625
    mean, se = paired_difference(after, before)
    # deviations -0.0625 x3, 0.1875: squares sum 3 * 0.00390625 + 0.03515625 = 0.046875
    assert mean == pytest.approx(0.5625)
    assert se == pytest.approx(math.sqrt(0.046875 / 3 / 4))
    assert se < mean_and_se(after)[1] / 10
    with pytest.raises(ValueError, match="not paired"):
        paired_difference([1.0], [1.0, 2.0])
