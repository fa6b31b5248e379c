"""``train.experience``: the learner's advantages for each ``--advantage`` against the pure
``algo`` functions, Dr. GRPO's unscaled baseline and the TIS weights, by hand."""

import math

import pytest
import torch

from ray_adlf.algo import reinforce_pp_advantages, reinforce_pp_baseline_advantages
from ray_adlf.algo.rewards import per_token_rewards
from ray_adlf.models.policy import pack_sequences
from ray_adlf.train.experience import complete_experience, make_experience
from ray_adlf.train.ppo_settings import PPOSettings

PROMPTS = [[4, 205, 279], [4, 300, 301], [4, 205, 266], [4, 349, 335]]
RESPONSES = [[5, 6, 7], [8, 9], [9, 10], [11]]
SCORES = torch.tensor([1.0, 0.0, 3.0, 1.0])
BETA = 0.2


def completed(advantage: str, engine_shift: float | None = None, **settings):
    """The experience of the four rows with old logprobs -1 and reference -1.5 per token
    (k1 = 0.5); the engine's logprobs ``old + engine_shift`` when given."""
    batch = pack_sequences(PROMPTS, RESPONSES, pad_id=0)
    mask = batch["response_mask"].float()
    if engine_shift is not None:
        batch["engine_logprobs"] = (-1.0 + engine_shift) * mask
    settings = PPOSettings(beta=BETA, advantage=advantage, group_size=2, **settings)
    deferred = make_experience(None, -1.5 * mask, batch, SCORES, settings, defer=True)
    return complete_experience(deferred, -1.0 * mask, None, settings), mask


@pytest.mark.parametrize("gamma", [1.0, 0.9])
def test_reinforce_pp_is_the_pure_function(gamma):
    exp, mask = completed("reinforce_pp", gamma=gamma)
    rewards = per_token_rewards(SCORES, exp.kl, mask, BETA)
    want, returns = reinforce_pp_advantages(rewards, mask, gamma)
    assert torch.allclose(exp.advantages, want, atol=1e-6)
    assert torch.allclose(exp.returns, returns, atol=1e-6)
    # by hand, gamma 1: row 0's returns from its first token: 1 - 0.2 * 0.5 * 3 = 0.7
    if gamma == 1.0:
        assert exp.returns[0].tolist() == pytest.approx([0.7, 0.8, 0.9])


def test_reinforce_pp_baseline_is_the_pure_function():
    exp, mask = completed("reinforce_pp_baseline")
    want, returns = reinforce_pp_baseline_advantages(SCORES, exp.kl, mask, 2, BETA)
    assert torch.allclose(exp.advantages, want, atol=1e-6)
    # the scores lose their group mean: 1 - 0.5 = 0.5 at row 0's last token
    assert exp.returns[0, 2].item() == pytest.approx(0.5 - BETA * 0.5)


def test_dr_grpo_keeps_the_group_scale():
    # sequence returns (score - beta * sum kl): 0.7, -0.2 | 2.8, 0.9
    exp, _ = completed("grpo", group_std_normalize=False)
    assert exp.advantages[:, 0].tolist() == pytest.approx([0.45, -0.45, 0.95, -0.95], abs=1e-6)
    scaled, _ = completed("grpo")  # GRPO divides by each group's population std: 0.45, 0.95
    assert scaled.advantages[:, 0].tolist() == pytest.approx([1, -1, 1, -1], abs=1e-5)


@pytest.mark.parametrize(
    "shift, weight, truncated",
    [(0.5, math.exp(-0.5), False), (-0.5, math.exp(0.5), False), (-1.0, 2.0, True)],
)
def test_tis_weights_by_hand(shift, weight, truncated):
    # the engine's logprob is old + shift: w = min(exp(old - engine), 2) = min(exp(-shift), 2)
    exp, mask = completed("grpo", engine_shift=shift, tis_cap=2.0)
    assert torch.allclose(exp.is_weights, weight * mask, atol=1e-6)
    assert (exp.is_weights[mask.bool()] == 2.0).all().item() is truncated


def test_no_tis_without_a_cap_or_without_engine_logprobs():
    assert completed("grpo", engine_shift=0.5, tis_cap=0.0)[0].is_weights is None
    assert completed("grpo", tis_cap=2.0)[0].is_weights is None
