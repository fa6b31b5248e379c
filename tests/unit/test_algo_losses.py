import math

import pytest
import torch
import torch.nn.functional as F

from ray_adlf.algo import (
    entropy_from_logits,
    kl_loss,
    logprobs_from_logits,
    policy_loss,
    value_loss,
)


def test_policy_loss_clipping_active_and_inactive():
    old_logp = torch.zeros(2, 3)
    # ratios: row 0 (A = +1): 1.1 inside the clip range, 1.5 above it; row 1 (A = -1): 0.5, 1.5
    ratios = torch.tensor([[1.1, 1.5, 1.0], [0.5, 1.5, 1.0]])
    logp = ratios.log()
    advantages = torch.tensor([[1.0, 1.0, 1.0], [-1.0, -1.0, -1.0]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 0]])
    loss, stats = policy_loss(logp, old_logp, advantages, mask, clip_eps=0.2)
    # A=+1, r=1.1: max(-1.1, -1.1) = -1.1      (not clipped)
    # A=+1, r=1.5: max(-1.5, -1.2) = -1.2      (clipped)
    # A=-1, r=0.5: max(0.5, 0.8)   = 0.8       (clipped)
    # A=-1, r=1.5: max(1.5, 1.2)   = 1.5       (not clipped: pessimistic bound keeps 1.5)
    # mean = (-1.1 - 1.2 + 0.8 + 1.5) / 4 = 0.0
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    assert stats["clip_fraction"].item() == pytest.approx(0.5)
    # approx_kl = mean of (r - 1) - log r over the four valid tokens
    expected_kl = sum((r - 1) - math.log(r) for r in [1.1, 1.5, 0.5, 1.5]) / 4
    assert stats["approx_kl"].item() == pytest.approx(expected_kl, rel=1e-5)


def test_policy_loss_gradient_only_through_unclipped_tokens():
    logp = torch.log(torch.tensor([[1.1, 1.5]])).requires_grad_()
    loss, _ = policy_loss(logp, torch.zeros(1, 2), torch.ones(1, 2), torch.ones(1, 2), 0.2)
    loss.backward()
    # d/dlogp of -r / 2 is -r / 2 = -0.55 for the unclipped token, 0 for the clipped one
    assert logp.grad.tolist()[0] == pytest.approx([-0.55, 0.0])


def test_value_loss_clip():
    values = torch.tensor([[1.5, 1.1, 99.0]])
    old_values = torch.tensor([[1.0, 1.0, 0.0]])
    returns = torch.tensor([[2.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 0]])
    loss, stats = value_loss(values, old_values, returns, mask, clip_eps_value=0.2)
    # token 0: (1.5 - 2)^2 = 0.25; clipped V = 1.2 -> (1.2 - 2)^2 = 0.64 -> 0.64 (clipped)
    # token 1: (1.1 - 0)^2 = 1.21; 1.1 is inside [0.8, 1.2] -> 1.21 (not clipped)
    # loss = 0.5 * (0.64 + 1.21) / 2 = 0.4625
    assert loss.item() == pytest.approx(0.4625)
    assert stats["clip_fraction"].item() == pytest.approx(0.5)


def test_entropy_uniform_and_hand_case():
    # uniform over V = 7 -> H = log 7
    assert torch.allclose(
        entropy_from_logits(torch.zeros(2, 3, 7)), torch.full((2, 3), math.log(7))
    )
    # logits [0, log 3] -> p = [1/4, 3/4]; H = -(0.25 ln 0.25 + 0.75 ln 0.75) = 0.562335
    logits = torch.tensor([[[0.0, math.log(3.0)]]])
    assert entropy_from_logits(logits).item() == pytest.approx(
        -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    )


def test_logprobs_divide_by_temperature_before_log_softmax():
    # logits [0, ln 4] / 2 = [0, ln 2] -> p = [1/3, 2/3]; at T=1 p = [1/5, 4/5]
    logits = torch.tensor([[[0.0, math.log(4.0)]]])
    tokens = torch.tensor([[1]])
    assert logprobs_from_logits(logits, tokens, 2.0).item() == pytest.approx(math.log(2 / 3))
    assert logprobs_from_logits(logits, tokens, 1.0).item() == pytest.approx(math.log(4 / 5))

    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 11, generator=generator)
    tokens = torch.randint(0, 11, (2, 5), generator=generator)
    expected = F.log_softmax(logits / 2.0, dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(logprobs_from_logits(logits, tokens, 2.0), expected)


def test_logprobs_stable_for_huge_logits_and_reject_zero_temperature():
    logits = torch.tensor([[[1000.0, 0.0]]])
    assert logprobs_from_logits(logits, torch.tensor([[0]]), 1.0).item() == 0.0
    assert logprobs_from_logits(logits, torch.tensor([[1]]), 1.0).item() == -1000.0
    with pytest.raises(ValueError, match="temperature"):
        logprobs_from_logits(logits, torch.tensor([[0]]), 0.0)


def test_kl_loss_masked_mean_of_estimator():
    logp = torch.tensor([[math.log(0.5), math.log(0.5), 0.0]])
    logp_ref = torch.tensor([[math.log(0.25), math.log(0.5), -5.0]])
    mask = torch.tensor([[1, 1, 0]])
    # k1: (log 2 + 0) / 2; k3: (0.5 + log 2 - 1 + 0) / 2
    assert kl_loss(logp, logp_ref, mask, "k1").item() == pytest.approx(math.log(2) / 2)
    assert kl_loss(logp, logp_ref, mask, "k3").item() == pytest.approx((math.log(2) - 0.5) / 2)


@pytest.mark.parametrize("estimator", ["k1", "k2", "k3"])
def test_kl_loss_with_junk_padding_has_finite_loss_and_gradient(estimator):
    # the learner's case: policy logprobs unmasked (junk -1000 at padding), reference * mask = 0;
    # unmasked, k3 would take exp(0 - (-1000)) = inf and backward 0 * inf = NaN
    logp = torch.tensor([[math.log(0.5), math.log(0.5), -1000.0, -1000.0]], requires_grad=True)
    logp_ref = torch.tensor([[math.log(0.25), math.log(0.5), 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 0, 0]])
    loss = kl_loss(logp, logp_ref, mask, estimator)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(logp.grad).all()
    assert logp.grad[0, 2:].tolist() == [0.0, 0.0]
    if estimator == "k3":
        # loss = (0.5 + log 2 - 1 + 0) / 2; d k3 / d logp = 1 - exp(logp_ref - logp):
        # token 0: 1 - 0.5 = 0.5, token 1: 0; divided by the 2 valid tokens
        assert loss.item() == pytest.approx((math.log(2) - 0.5) / 2)
        assert logp.grad[0, :2].tolist() == pytest.approx([0.25, 0.0])


def test_policy_loss_with_junk_padding_has_finite_gradient():
    # padding of old_logp at -1000 against logp 0 would give ratio exp(1000) = inf
    logp = torch.tensor([[math.log(1.1), 0.0, 0.0]], requires_grad=True)
    old_logp = torch.tensor([[0.0, -1000.0, -1000.0]])
    advantages = torch.tensor([[1.0, -5.0, float("nan")]])
    loss, stats = policy_loss(logp, old_logp, advantages, torch.tensor([[1, 0, 0]]), 0.2)
    loss.backward()
    # one valid token: A = 1, r = 1.1 unclipped: loss -1.1, gradient -r = -1.1
    assert loss.item() == pytest.approx(-1.1)
    assert logp.grad.tolist()[0] == pytest.approx([-1.1, 0.0, 0.0])
    assert all(torch.isfinite(v) for v in stats.values())
