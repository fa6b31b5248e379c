import math
import random

import pytest
import torch

from ray_adlf.algo import (
    discounted_returns,
    reinforce_pp_advantages,
    reinforce_pp_baseline_advantages,
)

REWARDS = torch.tensor([[-0.1, -0.2, 1.0, 9.0], [0.5, 9.0, 9.0, 9.0]])
MASK = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])


def test_returns_to_go_by_hand():
    # gamma 1: row 0 [-0.1 - 0.2 + 1, -0.2 + 1, 1] = [0.7, 0.8, 1.0]; row 1 [0.5]; padding 0
    assert discounted_returns(REWARDS, MASK).flatten().tolist() == pytest.approx(
        [0.7, 0.8, 1.0, 0.0, 0.5, 0.0, 0.0, 0.0]
    )
    # gamma 0.5: G2 = 1, G1 = -0.2 + 0.5 = 0.3, G0 = -0.1 + 0.15 = 0.05
    assert discounted_returns(REWARDS, MASK, gamma=0.5)[0].tolist() == pytest.approx(
        [0.05, 0.3, 1.0, 0.0]
    )
    # a masked token inside a row adds no reward (the 5) but passes the later return through
    gap = discounted_returns(torch.tensor([[0.0, 5.0, 2.0]]), torch.tensor([[1, 0, 1]]))
    assert gap.tolist() == [[2.0, 0.0, 2.0]]


def test_reinforce_pp_global_whitening_by_hand():
    advantages, returns = reinforce_pp_advantages(REWARDS, MASK, gamma=1.0, eps=0.0)
    # valid returns 0.7, 0.8, 1.0, 0.5: mean 0.75, deviations -0.05, 0.05, 0.25, -0.25,
    # biased var (0.0025 * 2 + 0.0625 * 2) / 4 = 0.0325 -- one mean over the whole batch
    s = math.sqrt(0.0325)
    assert advantages.flatten().tolist() == pytest.approx(
        [-0.05 / s, 0.05 / s, 0.25 / s, 0.0, -0.25 / s, 0.0, 0.0, 0.0]
    )
    assert returns[0, :3].tolist() == pytest.approx([0.7, 0.8, 1.0])
    assert not advantages.requires_grad


def test_reinforce_pp_baseline_by_hand():
    # groups of 2: scores [1, 3] -> [-1, 1]; [10, 10] -> [0, 0]; no KL
    scores = torch.tensor([1.0, 3.0, 10.0, 10.0])
    mask = torch.tensor([[1, 1], [1, 0], [1, 0], [1, 1]])
    advantages, returns = reinforce_pp_baseline_advantages(
        scores, torch.zeros(4, 2), mask, group_size=2, beta=0.1, eps=0.0
    )
    # returns (score at the last token, gamma 1): [-1, -1], [1], [0], [0, 0]
    assert returns.tolist() == [[-1.0, -1.0], [1.0, 0.0], [0.0, 0.0], [0.0, 0.0]]
    # over the 6 valid tokens: mean -1/6, biased var (2 (5/6)^2 + (7/6)^2 + 3 (1/6)^2) / 6 = 17/36
    s = math.sqrt(17 / 36)
    want = [-5 / 6 / s, -5 / 6 / s, 7 / 6 / s, 0.0, 1 / 6 / s, 0.0, 1 / 6 / s, 1 / 6 / s]
    assert advantages.flatten().tolist() == pytest.approx(want)


def reference_returns(rewards, mask, gamma):
    out = []
    for r, m in zip(rewards, mask, strict=True):
        row = [0.0] * len(m)
        for t in range(len(m)):
            if m[t]:
                row[t] = sum(gamma ** (s - t) * r[s] for s in range(t, len(m)) if m[s])
        out.append(row)
    return out


def reference_whiten(x, mask, eps):
    valid = [a for row, mr in zip(x, mask, strict=True) for a, m in zip(row, mr, strict=True) if m]
    mean = sum(valid) / len(valid)
    std = math.sqrt(sum((a - mean) ** 2 for a in valid) / len(valid) + eps)
    return [
        [(a - mean) / std if m else 0.0 for a, m in zip(row, mr, strict=True)]
        for row, mr in zip(x, mask, strict=True)
    ]


def random_case(seed, rows=6, cols=8):
    rng = random.Random(seed)
    rewards = [[rng.uniform(-1, 1) for _ in range(cols)] for _ in range(rows)]
    lengths = [cols] + [rng.randint(1, cols) for _ in range(rows - 1)]
    mask = [[1 if t < n else 0 for t in range(cols)] for n in lengths]
    return rng, rewards, mask


@pytest.mark.parametrize("seed", range(4))
def test_reinforce_pp_matches_reference(seed):
    rng, rewards, mask = random_case(seed)
    gamma = [1.0, rng.uniform(0.9, 1.0)][seed % 2]
    want_returns = reference_returns(rewards, mask, gamma)
    want = reference_whiten(want_returns, mask, 1e-8)
    got, returns = reinforce_pp_advantages(
        torch.tensor(rewards, dtype=torch.float64), torch.tensor(mask), gamma
    )
    for g, w, gr, wr in zip(got.tolist(), want, returns.tolist(), want_returns, strict=True):
        assert g == pytest.approx(w, abs=1e-10)
        assert gr == pytest.approx(wr, abs=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_reinforce_pp_baseline_matches_reference(seed):
    rng, kl, mask = random_case(seed)
    group_size, beta, gamma = 3, 0.05, 1.0
    scores = [rng.uniform(0, 1) for _ in range(len(mask))]
    token_rewards = []
    for i, (k, m) in enumerate(zip(kl, mask, strict=True)):
        group = scores[i // group_size * group_size : (i // group_size + 1) * group_size]
        centred = scores[i] - sum(group) / group_size
        last = max(t for t in range(len(m)) if m[t])
        row = [-beta * k[t] * m[t] + (centred if t == last else 0.0) for t in range(len(m))]
        token_rewards.append(row)
    want = reference_whiten(reference_returns(token_rewards, mask, gamma), mask, 1e-8)
    got, _ = reinforce_pp_baseline_advantages(
        torch.tensor(scores, dtype=torch.float64),
        torch.tensor(kl, dtype=torch.float64),
        torch.tensor(mask),
        group_size,
        beta,
        gamma,
    )
    for g, w in zip(got.tolist(), want, strict=True):
        assert g == pytest.approx(w, abs=1e-10)
