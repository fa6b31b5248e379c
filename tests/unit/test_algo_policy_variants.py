"""policy_loss options: clip-higher, dual clip, truncated IS weights, aggregation; Dr. GRPO."""

import math
import random

import pytest
import torch

from ray_adlf.algo import group_advantages, policy_loss


def test_clip_higher_by_hand():
    # eps_low 0.2, eps_high 0.28: A = +1 may grow the ratio up to 1.28, A = -1 shrink to 0.8
    ratios = torch.tensor([[1.25, 1.5, 0.7, 0.9]])
    advantages = torch.tensor([[1.0, 1.0, -1.0, -1.0]])
    args = (ratios.log(), torch.zeros(1, 4), advantages, torch.ones(1, 4))
    loss, stats = policy_loss(*args, clip_eps=0.2, clip_eps_high=0.28)
    # A=+1 r=1.25: -1.25 (inside); r=1.5: -1.28 (clipped); A=-1 r=0.7: max(0.7, 0.8) = 0.8
    # (clipped); r=0.9: 0.9 -> mean (-1.25 - 1.28 + 0.8 + 0.9) / 4 = -0.2075
    assert loss.item() == pytest.approx(-0.2075)
    assert stats["clip_fraction"].item() == pytest.approx(0.5)
    # symmetric 0.2 clips r=1.25 to 1.2 and r=1.5 to 1.2: (-1.2 - 1.2 + 0.8 + 0.9) / 4 = -0.175
    assert policy_loss(*args, clip_eps=0.2)[0].item() == pytest.approx(-0.175)


def test_dual_clip_by_hand_and_zero_gradient_where_it_binds():
    ratios = torch.tensor([[5.0, 2.0, 0.5, 5.0]])
    logp = ratios.log().requires_grad_()
    advantages = torch.tensor([[-1.0, -1.0, -2.0, 1.0]])
    loss, stats = policy_loss(
        logp, torch.zeros(1, 4), advantages, torch.ones(1, 4), clip_eps=0.2, dual_clip=3.0
    )
    # A=-1 r=5: max(5, 1.2) = 5 > -cA = 3 -> 3 (dual binds)
    # A=-1 r=2: max(2, 1.2) = 2 < 3 -> 2;  A=-2 r=0.5: max(1, 1.6) = 1.6 < 6 -> 1.6 (clipped)
    # A=+1 r=5: max(-5, -1.2) = -1.2 (clipped; no dual clip for A > 0)
    # mean (3 + 2 + 1.6 - 1.2) / 4 = 1.35
    assert loss.item() == pytest.approx(1.35)
    assert stats["dual_clip_fraction"].item() == pytest.approx(0.25)
    assert stats["clip_fraction"].item() == pytest.approx(0.5)
    loss.backward()
    # only the unclipped A=-1 r=2 token moves: d(-A r)/dlogp / 4 = 2 / 4; dual-bound token: 0
    assert logp.grad.tolist()[0] == pytest.approx([0.0, 0.5, 0.0, 0.0])

    plain = ratios.log().requires_grad_()
    loss, stats = policy_loss(plain, torch.zeros(1, 4), advantages, torch.ones(1, 4), 0.2)
    loss.backward()
    assert loss.item() == pytest.approx((5 + 2 + 1.6 - 1.2) / 4)
    assert stats["dual_clip_fraction"].item() == 0.0
    assert plain.grad.tolist()[0] == pytest.approx([1.25, 0.5, 0.0, 0.0])
    with pytest.raises(ValueError, match="dual_clip"):
        policy_loss(plain, torch.zeros(1, 4), advantages, torch.ones(1, 4), 0.2, dual_clip=1.0)


def test_is_weights_scale_each_token_and_get_no_gradient():
    # the tokens of test_policy_loss_clipping_active_and_inactive: per-token [-1.1, -1.2, 0.8, 1.5]
    logp = torch.tensor([[1.1, 1.5], [0.5, 1.5]]).log().requires_grad_()
    advantages = torch.tensor([[1.0, 1.0], [-1.0, -1.0]])
    weights = torch.tensor([[0.5, 2.0], [1.0, 1.0]], requires_grad=True)
    loss, _ = policy_loss(
        logp, torch.zeros(2, 2), advantages, torch.ones(2, 2), 0.2, is_weights=weights
    )
    # (0.5 * -1.1 + 2 * -1.2 + 0.8 + 1.5) / 4 = -0.1625
    assert loss.item() == pytest.approx(-0.1625)
    loss.backward()
    # unclipped tokens: w * (-A r) / 4 -> 0.5 * -1.1 / 4 and 1 * 1.5 / 4; clipped ones 0
    assert logp.grad.flatten().tolist() == pytest.approx([-0.1375, 0.0, 0.0, 0.375])
    assert weights.grad is None
    with pytest.raises(ValueError, match="is_weights"):
        policy_loss(
            logp, torch.zeros(2, 2), advantages, torch.ones(2, 2), 0.2, is_weights=weights[0]
        )


def test_dr_grpo_unscaled_advantages_and_constant_length_normalisation():
    # scores [1, 0] in one group -> A = [0.5, -0.5] (no std division); responses of 2 and 1 tokens
    advantages = group_advantages(torch.tensor([1.0, 0.0]), 2, "grpo", normalize_std=False)
    assert advantages.tolist() == [0.5, -0.5]
    mask = torch.tensor([[1, 1], [1, 0]])
    token_advantages = advantages.unsqueeze(1) * mask
    logp = torch.zeros(2, 2, requires_grad=True)
    loss, _ = policy_loss(
        logp,
        torch.zeros(2, 2),
        token_advantages,
        mask,
        0.2,
        loss_agg_mode="seq_mean_token_sum_norm",
        constant_length=4,
    )
    # r = 1 -> per token -A: row 0 [-0.5, -0.5], row 1 [0.5]; (-1 + 0.5) / (2 rows * 4) = -0.0625
    assert loss.item() == pytest.approx(-0.0625)
    loss.backward()
    # every token gets -A / (S L) = -A / 8, whatever its response's length
    assert logp.grad.flatten().tolist() == pytest.approx([-0.0625, -0.0625, 0.0625, 0.0])


def reference_policy_loss(logp, old, adv, mask, eps_low, eps_high, dual, weights):
    """Plain-Python PPO surrogate with clip-higher, dual clip and IS weights; token mean."""
    total, count = 0.0, 0
    for t in range(len(mask)):
        if not mask[t]:
            continue
        r = math.exp(logp[t] - old[t])
        a = adv[t]
        term = max(-a * r, -a * min(max(r, 1 - eps_low), 1 + eps_high))
        if dual is not None and a < 0:
            term = min(term, -dual * a)
        total += weights[t] * term
        count += 1
    return total / count


@pytest.mark.parametrize("seed", range(6))
def test_matches_reference_on_random_inputs(seed):
    rng = random.Random(seed)
    n = 40
    logp = [rng.uniform(-3, 0) for _ in range(n)]
    old = [p + rng.gauss(0, 0.8) for p in logp]
    adv = [rng.gauss(0, 1) for _ in range(n)]
    mask = [1 if rng.random() > 0.2 else 0 for _ in range(n)]
    weights = [rng.uniform(0, 2) for _ in range(n)]
    eps_high = [None, 0.28][seed % 2]
    dual = [None, 3.0, 2.0][seed % 3]
    want = reference_policy_loss(
        logp, old, adv, mask, 0.2, 0.2 if eps_high is None else eps_high, dual, weights
    )

    def t(x):
        return torch.tensor([x], dtype=torch.float64)

    got, _ = policy_loss(
        t(logp),
        t(old),
        t(adv),
        torch.tensor([mask]),
        0.2,
        clip_eps_high=eps_high,
        dual_clip=dual,
        is_weights=t(weights),
    )
    assert got.item() == pytest.approx(want, abs=1e-12)
    if eps_high is None and dual is None:
        plain = reference_policy_loss(logp, old, adv, mask, 0.2, 0.2, None, [1.0] * n)
        got, _ = policy_loss(t(logp), t(old), t(adv), torch.tensor([mask]), 0.2)
        assert got.item() == pytest.approx(plain, abs=1e-12)
