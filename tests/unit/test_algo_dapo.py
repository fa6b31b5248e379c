import random

import pytest
import torch

from ray_adlf.algo import groups_with_reward_variance, overlong_penalty, select_groups

# four groups of 3: all 1 (no signal), mixed, all 0 (no signal), mixed
SCORES = torch.tensor([1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.2, 0.5, 0.5])


def test_groups_with_reward_variance_by_hand():
    assert groups_with_reward_variance(SCORES, 3).tolist() == [False, True, False, True]
    assert groups_with_reward_variance(SCORES.reshape(4, 3), 3).tolist() == [
        False,
        True,
        False,
        True,
    ]
    # spread of group 3 is 0.3: dropped with atol 0.5
    assert groups_with_reward_variance(SCORES, 3, atol=0.5).tolist() == [False, True, False, False]


def test_select_groups_returns_rows_of_kept_groups():
    # groups 1 and 3 -> rows 3, 4, 5 and 9, 10, 11
    assert select_groups(SCORES, 3).tolist() == [3, 4, 5, 9, 10, 11]
    assert select_groups(SCORES, 3, max_groups=1).tolist() == [3, 4, 5]
    assert select_groups(SCORES, 3, max_groups=0).tolist() == []
    assert select_groups(torch.ones(6), 3).tolist() == []
    with pytest.raises(ValueError, match="groups of 5"):
        select_groups(SCORES, 5)


@pytest.mark.parametrize("seed", range(4))
def test_select_groups_matches_reference(seed):
    rng = random.Random(seed)
    group_size = rng.randint(2, 5)
    scores = [float(rng.randint(0, 1)) for _ in range(group_size * 20)]
    want = []
    for g in range(20):
        group = scores[g * group_size : (g + 1) * group_size]
        if len(set(group)) > 1:
            want.extend(range(g * group_size, (g + 1) * group_size))
    assert select_groups(torch.tensor(scores), group_size).tolist() == want


def test_overlong_penalty_by_hand():
    # L_max = 20, L_cache = 4: free up to 16, then (16 - L) / 4, -1 beyond 20
    lengths = torch.tensor([10, 16, 17, 18, 20, 21])
    out = overlong_penalty(lengths, max_length=20, cache_length=4)
    assert out.dtype == torch.get_default_dtype()
    assert out.tolist() == pytest.approx([0.0, 0.0, -0.25, -0.5, -1.0, -1.0])
    half = overlong_penalty(lengths.double(), 20, 4, penalty_factor=0.5)
    assert half.dtype == torch.float64
    assert half.tolist() == pytest.approx([0.0, 0.0, -0.125, -0.25, -0.5, -0.5])


def test_overlong_penalty_rejects_bad_lengths():
    for cache in [0, 21]:
        with pytest.raises(ValueError, match="cache_length"):
            overlong_penalty(torch.tensor([1]), max_length=20, cache_length=cache)
    with pytest.raises(ValueError, match="penalty_factor"):
        overlong_penalty(torch.tensor([1]), 20, 4, penalty_factor=-1.0)


def test_overlong_penalty_matches_paper_formula():
    rng = random.Random(0)
    max_length, cache, factor = 512, 128, 0.7
    lengths = [rng.randint(0, 600) for _ in range(200)]

    def paper(length):  # DAPO eq. (13), scaled by the factor
        if length <= max_length - cache:
            return 0.0
        if length <= max_length:
            return (max_length - cache - length) / cache * factor
        return -factor

    got = overlong_penalty(torch.tensor(lengths), max_length, cache, factor).tolist()
    assert got == pytest.approx([paper(n) for n in lengths], abs=1e-6)
