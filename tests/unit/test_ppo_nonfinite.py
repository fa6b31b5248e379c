"""A PPO step with a non-finite loss or gradient never touches the weights; it is counted."""

import math

import pytest
import torch

from ray_adlf.models.loading import load_causal_lm
from ray_adlf.models.policy import pack_sequences
from ray_adlf.train.experience import make_experience
from ray_adlf.train.ppo_learner import ppo_update
from ray_adlf.train.ppo_settings import PPOSettings

PROMPTS = [[4, 205, 279], [4, 300, 301], [4, 205, 266], [4, 349, 335]]
RESPONSES = [[5, 6, 7], [8, 9], [9, 10], [11]]


def setup(poisoned_rows: list[int]):
    """The tiny policy, its optimizer, and an RLOO experience whose ``poisoned_rows`` have NaN
    advantages (as a NaN reward would give)."""
    torch.manual_seed(0)
    model = load_causal_lm("tiny")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 - 0.1 * step)
    batch = pack_sequences(PROMPTS, RESPONSES, pad_id=0)
    ref = torch.zeros(batch["response_ids"].shape)
    experience = make_experience(
        model,
        ref,
        batch,
        torch.tensor([1.0, 0.0, 0.5, 0.2]),
        PPOSettings(kl_estimator="k3", advantage="rloo", lam=1.0, group_size=2),
    )
    experience.advantages[poisoned_rows] = float("nan")
    return model, optimizer, scheduler, experience


def update(model, optimizer, scheduler, experience) -> dict[str, float]:
    settings = PPOSettings(
        kl_estimator="k3",
        advantage="rloo",
        num_minibatches=4,  # one row per step
        vf_coef=0.0,
        max_grad_norm=0.0,  # no clipping: a NaN gradient would reach the optimizer unchanged
    )
    return ppo_update(
        model, optimizer, scheduler, experience, settings, torch.Generator().manual_seed(0)
    )


def weights(model) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def test_a_poisoned_step_is_skipped_and_the_others_train():
    model, optimizer, scheduler, experience = setup(poisoned_rows=[2])
    before = weights(model)
    stats = update(model, optimizer, scheduler, experience)
    after = weights(model)
    assert stats["skipped_steps"] == 1
    assert all(math.isfinite(v) for v in stats.values())
    assert all(torch.isfinite(p).all() for p in after)
    assert any(not torch.equal(a, b) for a, b in zip(before, after))
    assert scheduler.last_epoch == 3  # three optimizer steps, three scheduler steps
    assert scheduler.get_last_lr()[0] == pytest.approx(1e-3 * 0.7)


def test_a_round_with_only_poisoned_steps_stops_with_a_clear_error():
    model, optimizer, scheduler, experience = setup(poisoned_rows=[0, 1, 2, 3])
    before = weights(model)
    with pytest.raises(FloatingPointError, match="every one of the 4 PPO steps"):
        update(model, optimizer, scheduler, experience)
    assert all(torch.equal(a, b) for a, b in zip(before, weights(model)))
    assert scheduler.last_epoch == 0
