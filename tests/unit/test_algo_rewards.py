import pytest
import torch

from ray_adlf.algo import per_token_rewards


def test_kl_penalty_and_score_at_last_valid_token():
    score = torch.tensor([2.0, -1.0, 5.0])
    kl = torch.tensor([[0.1, 0.2, 0.3, 9.0], [0.5, 9.0, 9.0, 9.0], [1.0, 1.0, 1.0, 1.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]])
    rewards = per_token_rewards(score, kl, mask, beta=0.5)
    # row 0: -0.5 * [0.1, 0.2, 0.3] = [-0.05, -0.1, -0.15], + 2 at t=2 -> 1.85; padding 0
    # row 1: -0.5 * 0.5 = -0.25, + (-1) at t=0 -> -1.25
    # row 2: no valid token -> all zero, score dropped
    expected = [[-0.05, -0.1, 1.85, 0.0], [-1.25, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]
    for got, want in zip(rewards.tolist(), expected, strict=True):
        assert got == pytest.approx(want)


def test_score_lands_on_last_one_even_with_a_gap():
    rewards = per_token_rewards(
        torch.tensor([3.0]), torch.zeros(1, 4), torch.tensor([[1, 0, 1, 0]]), beta=1.0
    )
    assert rewards.tolist() == [[0.0, 0.0, 3.0, 0.0]]


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="shapes"):
        per_token_rewards(torch.zeros(2), torch.zeros(3, 4), torch.ones(3, 4), beta=0.1)
