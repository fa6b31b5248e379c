import math

import pytest

from ray_adlf.data.conditioning import condition_on_score, score_prefix
from ray_adlf.data.curriculum import curriculum_order, difficulty_scores, pacing_fraction
from ray_adlf.data.records import Turn


def test_difficulty_by_hand():
    # lengths 10, 30, 20, 20 -> ranks 0, 3, 1, 1 (ties share the lowest); N - 1 = 3
    # w = 0.5: 0.5*(1 - s/5) + 0.5*rank/3
    got = difficulty_scores([5.0, 0.0, 2.5, 5.0], [10, 30, 20, 20], score_weight=0.5)
    assert got == pytest.approx([0.0, 0.5 + 0.5, 0.25 + 0.5 / 3, 0.0 + 0.5 / 3])


def test_difficulty_weights_select_score_or_length():
    assert difficulty_scores([4.0, 1.0], [99, 1], score_weight=1.0) == pytest.approx([0.2, 0.8])
    assert difficulty_scores([4.0, 1.0], [99, 1], score_weight=0.0) == pytest.approx([1.0, 0.0])


@pytest.mark.parametrize(
    "pacing, step, expected",
    [
        ("linear", 0, 0.2),
        ("linear", 2, 0.2 + 0.8 * 0.5),
        ("linear", 4, 1.0),
        ("root", 0, 0.2),
        ("root", 2, math.sqrt(0.04 + 0.96 * 0.5)),
        ("root", 4, 1.0),
        ("step", 1, 0.2 + 0.8 * 0.25),  # progress 0.25 -> floor(1)/4
        ("step", 3, 0.2 + 0.8 * 0.75),
        ("step", 4, 1.0),
    ],
)
def test_pacing_by_hand(pacing, step, expected):
    assert pacing_fraction(step, 5, 0.2, pacing) == pytest.approx(expected)


def test_pacing_rejects_unknown():
    with pytest.raises(ValueError, match="unknown pacing 'exp'"):
        pacing_fraction(0, 5, 0.2, "exp")


def test_curriculum_order_is_a_permutation_easy_first():
    difficulties = [i / 99 for i in range(100)][::-1]  # example 99 is easiest
    order = curriculum_order(
        difficulties, batch_size=10, start_fraction=0.2, pacing="linear", seed=1
    )
    assert sorted(order) == list(range(100))
    easiest_20 = set(range(80, 100))
    assert set(order[:10]) <= easiest_20  # first batch drawn from the easiest 20%
    mean_first = sum(difficulties[i] for i in order[:30]) / 30
    mean_last = sum(difficulties[i] for i in order[-30:]) / 30
    assert mean_first < mean_last - 0.3
    assert order == curriculum_order(difficulties, 10, 0.2, "linear", seed=1)
    assert order != curriculum_order(difficulties, 10, 0.2, "linear", seed=2)


def test_full_start_fraction_is_a_plain_shuffle():
    order = curriculum_order([0.0] * 7, batch_size=3, start_fraction=1.0, pacing="root", seed=0)
    assert sorted(order) == list(range(7))


def test_score_prefix_rounds_to_half_points():
    assert score_prefix(4.26) == "Target score: 4.5/5"
    assert score_prefix(0) == "Target score: 0/5"
    with pytest.raises(ValueError, match=r"score must be in \[0, 5\]"):
        score_prefix(5.5)


def test_condition_on_score_inserts_or_extends_system_turn():
    turns = [Turn("user", "Hi"), Turn("assistant", "Hello")]
    assert condition_on_score(turns, 3.0) == [Turn("system", "Target score: 3/5"), *turns]
    with_system = [Turn("system", "Be brief."), *turns]
    assert condition_on_score(with_system, 5)[0] == Turn("system", "Target score: 5/5\nBe brief.")
