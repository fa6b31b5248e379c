"""Cross-checks against independent plain-Python implementations (lists, floats, math only)."""

import math
import random

import pytest
import torch

from ray_adlf.algo import AdaptiveKLController, gae, kl_k3, masked_whiten


def random_right_padded(rng: random.Random, rows: int, cols: int):
    """Random values and a right-padded 0/1 mask (some rows full, some empty)."""
    values = [[rng.uniform(-3, 3) for _ in range(cols)] for _ in range(rows)]
    lengths = [rng.randint(0, cols) for _ in range(rows)]
    lengths[0] = cols
    mask = [[1 if t < n else 0 for t in range(cols)] for n in lengths]
    return values, mask


def reference_gae(rewards, values, mask, gamma, lam):
    advantages, returns = [], []
    for r, v, m in zip(rewards, values, mask, strict=True):
        n = sum(m)
        row_adv = [0.0] * len(m)
        next_adv, next_value = 0.0, 0.0
        for t in range(n - 1, -1, -1):
            delta = r[t] + gamma * next_value - v[t]
            next_adv = delta + gamma * lam * next_adv
            next_value = v[t]
            row_adv[t] = next_adv
        advantages.append(row_adv)
        returns.append([row_adv[t] + v[t] if t < n else 0.0 for t in range(len(m))])
    return advantages, returns


def reference_whiten(x, mask, eps):
    valid = [
        a for row, mrow in zip(x, mask, strict=True) for a, m in zip(row, mrow, strict=True) if m
    ]
    mean = sum(valid) / len(valid)
    var = sum((a - mean) ** 2 for a in valid) / len(valid)
    return [
        [(a - mean) / math.sqrt(var + eps) if m else 0.0 for a, m in zip(row, mrow, strict=True)]
        for row, mrow in zip(x, mask, strict=True)
    ]


@pytest.mark.parametrize("seed", range(5))
def test_gae_matches_reference(seed):
    rng = random.Random(seed)
    rewards, mask = random_right_padded(rng, rows=4, cols=9)
    values = [[rng.uniform(-2, 2) for _ in row] for row in rewards]
    gamma, lam = rng.uniform(0.8, 1.0), rng.uniform(0.8, 1.0)
    want_adv, want_ret = reference_gae(rewards, values, mask, gamma, lam)
    t = torch.tensor
    adv, ret = gae(
        t(rewards, dtype=torch.float64), t(values, dtype=torch.float64), t(mask), gamma, lam
    )
    for got, want in zip(adv.tolist() + ret.tolist(), want_adv + want_ret, strict=True):
        assert got == pytest.approx(want, abs=1e-10)


@pytest.mark.parametrize("seed", range(5))
def test_masked_whiten_matches_reference(seed):
    rng = random.Random(seed)
    x, mask = random_right_padded(rng, rows=3, cols=7)
    want = reference_whiten(x, mask, eps=1e-8)
    got = masked_whiten(torch.tensor(x, dtype=torch.float64), torch.tensor(mask), eps=1e-8)
    for got_row, want_row in zip(got.tolist(), want, strict=True):
        assert got_row == pytest.approx(want_row, abs=1e-10)


def test_k3_matches_reference():
    rng = random.Random(0)
    logp = [math.log(rng.uniform(0.01, 1.0)) for _ in range(50)]
    logp_ref = [math.log(rng.uniform(0.01, 1.0)) for _ in range(50)]
    want = [math.exp(q - p) - (q - p) - 1 for p, q in zip(logp, logp_ref, strict=True)]
    got = kl_k3(
        torch.tensor(logp, dtype=torch.float64), torch.tensor(logp_ref, dtype=torch.float64)
    )
    assert got.tolist() == pytest.approx(want, abs=1e-12)


def test_adaptive_kl_matches_reference():
    rng = random.Random(0)
    beta, target, horizon = 0.2, 3.0, 5000.0
    controller = AdaptiveKLController(beta, target, horizon)
    for _ in range(100):
        kl, n_steps = rng.uniform(0.0, 8.0), rng.randint(1, 512)
        error = kl / target - 1
        error = 0.2 if error > 0.2 else (-0.2 if error < -0.2 else error)
        beta = beta * (1 + error * n_steps / horizon)
        assert controller.update(kl, n_steps) == pytest.approx(beta, rel=1e-12)
