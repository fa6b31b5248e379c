import math
import random

import pytest
import torch

from ray_adlf.algo import policy_loss, truncated_is_weights


def test_truncated_is_weights_by_hand():
    # exp(old - engine) = 0.5 / 0.25 = 2, 0.9 / 0.9 = 1, 0.2 / 0.8 = 0.25; cap 1.5 truncates the 2
    old = torch.tensor([[math.log(0.5), math.log(0.9), math.log(0.2), 0.0]], requires_grad=True)
    engine = torch.tensor([[math.log(0.25), math.log(0.9), math.log(0.8), -1000.0]])
    weights, stats = truncated_is_weights(old, engine, torch.tensor([[1, 1, 1, 0]]), cap=1.5)
    assert weights.tolist()[0] == pytest.approx([1.5, 1.0, 0.25, 0.0])  # padding: 0, finite
    assert not weights.requires_grad
    assert stats["mean"].item() == pytest.approx(2.75 / 3)
    assert stats["max"].item() == pytest.approx(1.5)
    assert stats["truncated_fraction"].item() == pytest.approx(1 / 3)


def test_empty_mask_and_bad_cap():
    weights, stats = truncated_is_weights(
        torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1, 2), 2
    )
    assert weights.tolist() == [[0.0, 0.0]]
    assert [v.item() for v in stats.values()] == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="cap"):
        truncated_is_weights(torch.zeros(1, 2), torch.zeros(1, 2), torch.ones(1, 2), 0.0)


def test_weights_applied_to_policy_loss():
    old = torch.tensor([[math.log(0.5), math.log(0.2)]])
    engine = torch.tensor([[math.log(0.25), math.log(0.8)]])
    mask = torch.ones(1, 2)
    weights, _ = truncated_is_weights(old, engine, mask, cap=1.5)  # [1.5, 0.25]
    logp = old.clone().requires_grad_()  # ratio 1, A = [1, -2]: per-token [-1, 2]
    loss, _ = policy_loss(logp, old, torch.tensor([[1.0, -2.0]]), mask, 0.2, is_weights=weights)
    # (1.5 * -1 + 0.25 * 2) / 2 = -0.5
    assert loss.item() == pytest.approx(-0.5)


def test_matches_reference():
    rng = random.Random(0)
    n, cap = 300, 2.0
    old = [math.log(rng.uniform(0.01, 1)) for _ in range(n)]
    engine = [math.log(rng.uniform(0.01, 1)) for _ in range(n)]
    mask = [1 if rng.random() > 0.3 else 0 for _ in range(n)]
    want = [
        min(math.exp(o - e), cap) if m else 0.0 for o, e, m in zip(old, engine, mask, strict=True)
    ]
    raw = [math.exp(o - e) for o, e, m in zip(old, engine, mask, strict=True) if m]
    t = torch.tensor
    weights, stats = truncated_is_weights(
        t([old], dtype=torch.float64), t([engine], dtype=torch.float64), t([mask]), cap
    )
    assert weights[0].tolist() == pytest.approx(want, abs=1e-12)
    kept = [w for w, m in zip(want, mask, strict=True) if m]
    assert stats["mean"].item() == pytest.approx(sum(kept) / len(kept))
    assert stats["max"].item() == pytest.approx(max(kept))
    assert stats["truncated_fraction"].item() == pytest.approx(sum(r > cap for r in raw) / len(raw))
