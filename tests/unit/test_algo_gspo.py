import math
import random

import pytest
import torch

from ray_adlf.algo import gspo_policy_loss


def test_gspo_by_hand():
    old_logp = torch.tensor([[-1.0, -2.0, -1000.0], [-1.0, -1.0, -1.0]])
    # token log-ratios: row 0 [0.1, 0.3] (+ padding), row 1 [-0.1, 0.0, -0.2]
    logp = (old_logp + torch.tensor([[0.1, 0.3, 1000.0], [-0.1, 0.0, -0.2]])).requires_grad_()
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    advantages = torch.tensor([1.0, -1.0])
    loss, stats = gspo_policy_loss(logp, old_logp, advantages, mask, 0.2, 0.2)
    # s_0 = exp(0.2) = 1.221403 > 1.2, A = +1: max(-1.2214, -1.2) = -1.2 (clipped)
    # s_1 = exp(-0.1) = 0.904837, A = -1: inside [0.8, 1.2] -> 0.904837
    # loss = (-1.2 + 0.904837) / 2 sequences
    assert loss.item() == pytest.approx((-1.2 + math.exp(-0.1)) / 2, rel=1e-6)
    # clipped tokens: the 2 of row 0 out of 5
    assert stats["clip_fraction"].item() == pytest.approx(0.4)
    assert stats["seq_ratio_mean"].item() == pytest.approx((math.exp(0.2) + math.exp(-0.1)) / 2)
    loss.backward()
    # row 0 clipped -> 0; row 1: -A s_1 / (n_1 S) = 0.904837 / 6 per token; padding 0
    g = math.exp(-0.1) / 6
    assert logp.grad.flatten().tolist() == pytest.approx([0, 0, 0, g, g, g], rel=1e-6)


def test_per_sequence_and_broadcast_per_token_advantages_agree():
    generator = torch.Generator().manual_seed(1)
    old_logp = -torch.rand(3, 5, generator=generator)
    logp = old_logp + 1e-3 * torch.randn(3, 5, generator=generator)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0]])
    advantages = torch.tensor([0.5, -1.0, 2.0])
    a, _ = gspo_policy_loss(logp, old_logp, advantages, mask)
    b, _ = gspo_policy_loss(logp, old_logp, advantages.unsqueeze(1).expand(3, 5), mask)
    assert a.item() == pytest.approx(b.item())
    with pytest.raises(ValueError, match="advantages"):
        gspo_policy_loss(logp, old_logp, advantages[:2], mask)


def test_junk_padding_gives_finite_gradients():
    logp = torch.tensor([[-1.0, 0.0, float("nan")]], requires_grad=True)
    old_logp = torch.tensor([[-1.0, -1000.0, float("-inf")]])
    loss, stats = gspo_policy_loss(
        logp, old_logp, torch.tensor([[1.0, float("nan"), 3.0]]), torch.tensor([[1, 0, 0]])
    )
    loss.backward()
    # s = 1, A = 1: loss -1, gradient -A s / (1 * 1) = -1 on the valid token only
    assert loss.item() == pytest.approx(-1.0)
    assert logp.grad.tolist() == [[-1.0, 0.0, 0.0]]
    assert all(torch.isfinite(v) for v in stats.values())


def reference_gspo(logp, old, adv, mask, eps_low, eps_high):
    """Sequence-level GSPO from the paper, plain Python: the loss and its analytic gradient."""
    rows = [i for i, m in enumerate(mask) if sum(m)]
    loss, grad = 0.0, [[0.0] * len(m) for m in mask]
    for i in rows:
        n = sum(mask[i])
        s = math.exp(sum(p - q for p, q, m in zip(logp[i], old[i], mask[i], strict=True) if m) / n)
        a = adv[i]
        clipped_s = min(max(s, 1 - eps_low), 1 + eps_high)
        loss += max(-a * s, -a * clipped_s) / len(rows)
        # the unclipped term is active inside the range, or where it is the larger one
        if 1 - eps_low < s < 1 + eps_high or -a * s > -a * clipped_s:
            for t, m in enumerate(mask[i]):
                if m:  # d s / d logp_t = s / n
                    grad[i][t] = -a * s / n / len(rows)
    return loss, grad


@pytest.mark.parametrize("seed", range(6))
def test_value_and_gradient_match_sequence_level_gspo(seed):
    rng = random.Random(seed)
    eps_low, eps_high, noise = [(3e-4, 4e-4, 1e-3), (0.2, 0.28, 0.5)][seed % 2]
    rows, cols = 6, 7
    old = [[rng.uniform(-4, 0) for _ in range(cols)] for _ in range(rows)]
    logp = [[q + rng.gauss(0, noise) for q in row] for row in old]
    lengths = [cols, 0] + [rng.randint(1, cols) for _ in range(rows - 2)]
    mask = [[1 if t < n else 0 for t in range(cols)] for n in lengths]
    adv = [rng.gauss(0, 1) for _ in range(rows)]
    want_loss, want_grad = reference_gspo(logp, old, adv, mask, eps_low, eps_high)

    t = torch.tensor
    logp_t = t(logp, dtype=torch.float64, requires_grad=True)
    loss, _ = gspo_policy_loss(
        logp_t, t(old, dtype=torch.float64), t(adv, dtype=torch.float64), t(mask), eps_low, eps_high
    )
    loss.backward()
    assert loss.item() == pytest.approx(want_loss, abs=1e-12)
    for got_row, want_row in zip(logp_t.grad.tolist(), want_grad, strict=True):
        assert got_row == pytest.approx(want_row, abs=1e-12)

    # and the gradient of a direct sequence-level torch objective (no token trick) is the same
    direct = t(logp, dtype=torch.float64, requires_grad=True)
    m = t(mask, dtype=torch.float64)
    n = m.sum(dim=1)
    has = n > 0
    s = torch.exp(((direct - t(old, dtype=torch.float64)) * m).sum(dim=1)[has] / n[has])
    a = t(adv, dtype=torch.float64)[has]
    seq_loss = torch.maximum(-a * s, -a * s.clamp(1 - eps_low, 1 + eps_high)).mean()
    seq_loss.backward()
    assert torch.allclose(direct.grad, logp_t.grad, atol=1e-12)


def test_is_weights_and_token_mean_by_hand():
    # The rows of test_gspo_by_hand, with TIS weights and the token mean over all 5 tokens.
    old_logp = torch.tensor([[-1.0, -2.0, -1000.0], [-1.0, -1.0, -1.0]])
    logp = (old_logp + torch.tensor([[0.1, 0.3, 1000.0], [-0.1, 0.0, -0.2]])).requires_grad_()
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    weights = torch.tensor([[0.5, 2.0, 0.0], [1.0, 0.25, 1.5]], requires_grad=True)
    loss, _ = gspo_policy_loss(
        logp,
        old_logp,
        torch.tensor([1.0, -1.0]),
        mask,
        0.2,
        0.2,
        is_weights=weights,
        loss_agg_mode="token_mean",
    )
    # row 0: clipped at -1.2 per token, times 0.5 and 2; row 1: s_1 per token times its weights
    s_1 = math.exp(-0.1)
    assert loss.item() == pytest.approx((-1.2 * 2.5 + s_1 * 2.75) / 5, rel=1e-6)
    loss.backward()
    # d/dlogp_1t of w_1t * s_1t / 5 is w_1t * s_1 / 5 (GSPO-token: gradient s_1 per token)
    want = [0, 0, 0, s_1 / 5, 0.25 * s_1 / 5, 1.5 * s_1 / 5]
    assert logp.grad.flatten().tolist() == pytest.approx(want, rel=1e-6)
    assert weights.grad is None  # constants
    with pytest.raises(ValueError, match="is_weights"):
        gspo_policy_loss(logp, old_logp, torch.ones(2), mask, is_weights=weights[:, :2])
