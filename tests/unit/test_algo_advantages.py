import math

import pytest
import torch

from ray_adlf.algo import broadcast_to_tokens, gae, group_advantages


def test_gae_one_row_by_hand():
    rewards = torch.tensor([[0.0, 0.0, 1.0, 9.0]])
    values = torch.tensor([[0.5, 0.4, 0.3, 7.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    advantages, returns = gae(rewards, values, mask, gamma=0.9, lam=0.8)
    # t=2: delta = 1 + 0.9 * 0 - 0.3 = 0.7 (V after the last token is 0); A2 = 0.7
    # t=1: delta = 0 + 0.9 * 0.3 - 0.4 = -0.13; A1 = -0.13 + 0.72 * 0.7 = 0.374
    # t=0: delta = 0 + 0.9 * 0.4 - 0.5 = -0.14; A0 = -0.14 + 0.72 * 0.374 = 0.12928
    # returns = A + V = [0.62928, 0.774, 1.0]; the masked position (r=9, V=7) gives 0
    assert advantages.tolist()[0] == pytest.approx([0.12928, 0.374, 0.7, 0.0])
    assert returns.tolist()[0] == pytest.approx([0.62928, 0.774, 1.0, 0.0])


def test_gae_is_detached():
    values = torch.zeros(1, 2, requires_grad=True)
    advantages, returns = gae(torch.ones(1, 2), values, torch.ones(1, 2), gamma=1.0, lam=1.0)
    assert not advantages.requires_grad and not returns.requires_grad


def test_grpo_hand_case_population_std():
    scores = torch.tensor([1.0, 2.0, 3.0, 6.0, 5.0, 5.0, 5.0, 5.0])
    # group 0: mean 3, centred [-2, -1, 0, 3]; population var (4 + 1 + 0 + 9) / 4 = 3.5
    # group 1: all equal -> centred 0, std 0 -> 0 / eps = 0
    s = math.sqrt(3.5)
    out = group_advantages(scores, group_size=4, method="grpo", normalize_std=True)
    assert out.tolist() == pytest.approx([-2 / s, -1 / s, 0.0, 3 / s, 0, 0, 0, 0], abs=1e-5)
    centred = group_advantages(
        scores.reshape(2, 4), group_size=4, method="grpo", normalize_std=False
    )
    assert centred.tolist() == [[-2.0, -1.0, 0.0, 3.0], [0.0, 0.0, 0.0, 0.0]]


def test_rloo_hand_case_leave_one_out():
    scores = torch.tensor([[1.0, 2.0, 3.0, 6.0]])
    # s_i - mean of the other three: 1 - 11/3, 2 - 10/3, 3 - 9/3, 6 - 6/3
    out = group_advantages(scores, group_size=4, method="rloo", normalize_std=False)
    assert out.tolist()[0] == pytest.approx([-8 / 3, -4 / 3, 0.0, 4.0])
    # normalize_std divides by the population std sqrt(3.5)
    normed = group_advantages(scores, group_size=4, method="rloo", normalize_std=True)
    assert normed.tolist()[0] == pytest.approx([v / math.sqrt(3.5) for v in [-8 / 3, -4 / 3, 0, 4]])


def test_group_advantages_rejects_bad_sizes_and_method():
    with pytest.raises(ValueError, match=">= 2"):
        group_advantages(torch.ones(4), group_size=1, method="rloo", normalize_std=False)
    with pytest.raises(ValueError, match="groups of 3"):
        group_advantages(torch.ones(4), group_size=3, method="grpo", normalize_std=False)
    with pytest.raises(ValueError, match="groups of 3"):
        group_advantages(torch.ones(2, 4), group_size=3, method="grpo", normalize_std=False)
    with pytest.raises(ValueError, match="unknown group advantage"):
        group_advantages(torch.ones(4), group_size=2, method="ppo", normalize_std=False)


def test_broadcast_to_tokens():
    out = broadcast_to_tokens(torch.tensor([2.0, -1.0]), torch.tensor([[1, 1, 0], [1, 0, 0]]))
    assert out.tolist() == [[2.0, 2.0, 0.0], [-1.0, 0.0, 0.0]]
