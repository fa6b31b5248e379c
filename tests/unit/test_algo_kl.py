import math
import random

import pytest
import torch

from ray_adlf.algo import (
    AdaptiveKLController,
    FixedKLController,
    kl_estimate,
    kl_k1,
    kl_k2,
    kl_k3,
)

# policy p = 0.5, reference q = 0.25 for the sampled token
LOGP = torch.tensor([math.log(0.5)])
LOGP_REF = torch.tensor([math.log(0.25)])


def test_estimators_hand_values():
    # d = log 0.5 - log 0.25 = log 2 = 0.693147
    assert kl_k1(LOGP, LOGP_REF).item() == pytest.approx(math.log(2))
    # k2 = 0.5 * (log 2)^2 = 0.240227
    assert kl_k2(LOGP, LOGP_REF).item() == pytest.approx(0.5 * math.log(2) ** 2)
    # k3 = exp(log 0.25 - log 0.5) - (log 0.25 - log 0.5) - 1 = 0.5 + log 2 - 1 = 0.193147
    assert kl_k3(LOGP, LOGP_REF).item() == pytest.approx(0.5 + math.log(2) - 1)


def test_k3_is_zero_at_equal_logprobs_and_nonnegative():
    logp = torch.tensor([-3.0, -0.1, -1.0])
    assert kl_k3(logp, logp).tolist() == [0.0, 0.0, 0.0]
    assert bool((kl_k3(logp, logp.flip(0)) >= 0).all())


def test_kl_estimate_dispatch_and_unknown_name():
    for name, fn in [("k1", kl_k1), ("k2", kl_k2), ("k3", kl_k3)]:
        assert torch.equal(kl_estimate(LOGP, LOGP_REF, name), fn(LOGP, LOGP_REF))
    with pytest.raises(ValueError, match="unknown KL estimator"):
        kl_estimate(LOGP, LOGP_REF, "k4")


def test_fixed_controller_keeps_beta():
    controller = FixedKLController(0.05)
    assert controller.update(current_kl=100.0, n_steps=1000) == 0.05
    restored = FixedKLController(1.0)
    restored.load_state_dict(controller.state_dict())
    assert restored.update(current_kl=0.0, n_steps=1) == 0.05


def test_adaptive_controller_hand_steps():
    controller = AdaptiveKLController(init_beta=0.1, target=6.0, horizon=10000)
    # KL 9: e = clip(9/6 - 1 = 0.5) = 0.2; beta = 0.1 * (1 + 0.2 * 256 / 10000) = 0.100512
    assert controller.update(9.0, 256) == pytest.approx(0.100512)
    # KL 5.4: e = 5.4/6 - 1 = -0.1; beta = 0.100512 * (1 - 0.1 * 256 / 10000) = 0.100254689
    assert controller.update(5.4, 256) == pytest.approx(0.100512 * 0.99744)
    assert controller.beta == pytest.approx(0.100512 * 0.99744)


def test_adaptive_controller_state_round_trip():
    controller = AdaptiveKLController(init_beta=0.2, target=1.0, horizon=100)
    controller.update(3.0, 50)  # beta = 0.2 * (1 + 0.2 * 0.5) = 0.22
    restored = AdaptiveKLController(init_beta=0.2, target=1.0, horizon=100)
    restored.load_state_dict(controller.state_dict())
    assert restored.beta == pytest.approx(0.22)
    assert restored.update(0.0, 50) == pytest.approx(0.22 * 0.9)  # e = clip(-1) = -0.2


def test_adaptive_controller_rejects_bad_arguments():
    with pytest.raises(ValueError, match="target"):
        AdaptiveKLController(init_beta=0.1, target=0.0, horizon=10)
    with pytest.raises(ValueError, match="horizon"):
        AdaptiveKLController(init_beta=0.1, target=1.0, horizon=0)


def test_masked_estimators_are_zero_at_padding_even_for_inf():
    logp = torch.tensor([[math.log(0.5), float("-inf"), -1000.0]])
    logp_ref = torch.tensor([[math.log(0.25), 0.0, float("nan")]])
    mask = torch.tensor([[1, 0, 0]])
    for name in ["k1", "k2", "k3"]:
        out = kl_estimate(logp, logp_ref, name, mask)
        assert out[0, 1:].tolist() == [0.0, 0.0]
        assert out[0, 0].item() == pytest.approx(kl_estimate(LOGP, LOGP_REF, name).item())


def test_k3_log_ratio_clamped_to_bound():
    # d = logp_ref - logp = 30 -> clamped to 20: k3 = exp(20) - 20 - 1; -30 -> exp(-20) + 20 - 1
    logp = torch.tensor([-30.0, 0.0], dtype=torch.float64, requires_grad=True)
    logp_ref = torch.tensor([0.0, -30.0], dtype=torch.float64)
    out = kl_k3(logp, logp_ref)
    assert out.tolist() == pytest.approx([math.exp(20) - 21, math.exp(-20) + 19])
    out.sum().backward()
    assert logp.grad.tolist() == [0.0, 0.0]  # the clamp is flat outside [-20, 20]
    # k1 / k2 have no exp and are not clamped
    assert kl_k1(logp, logp_ref).tolist() == [-30.0, 30.0]


def test_masked_clamped_estimators_match_reference():
    rng = random.Random(0)
    n = 200
    logp = [rng.uniform(-40, 0) for _ in range(n)]
    logp_ref = [rng.uniform(-40, 0) for _ in range(n)]
    mask = [1 if rng.random() > 0.3 else 0 for _ in range(n)]
    want = {"k1": [], "k2": [], "k3": []}
    for p, q, m in zip(logp, logp_ref, mask, strict=True):
        d = p - q if m else 0.0
        x = min(max(-d, -20.0), 20.0)  # only k3 takes an exp, so only k3 is clamped
        want["k1"].append(d)
        want["k2"].append(0.5 * d * d)
        want["k3"].append(math.exp(x) - x - 1)
    t = torch.tensor
    for name, values in want.items():
        got = kl_estimate(
            t(logp, dtype=torch.float64), t(logp_ref, dtype=torch.float64), name, t(mask)
        )
        assert got.tolist() == pytest.approx(values, rel=1e-12, abs=1e-12)
