import math

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
