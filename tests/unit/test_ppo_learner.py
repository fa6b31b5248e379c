"""``make_experience`` and ``ppo_update`` on numbers worked out by hand, and the single-step
path that takes the old policy from the update's own forward."""

import pytest
import torch

from ray_adlf.models.loading import load_causal_lm
from ray_adlf.models.policy import PolicyWithValue, pack_sequences, response_forward
from ray_adlf.train.experience import complete_experience, make_experience
from ray_adlf.train.ppo_learner import ppo_update
from ray_adlf.train.ppo_settings import PPOSettings

PROMPTS = [[4, 205, 279], [4, 300, 301], [4, 205, 266], [4, 349, 335]]
RESPONSES = [[5, 6, 7], [8, 9], [9, 10], [11]]
SCORES = torch.tensor([1.0, 0.0, 3.0, 1.0])


def experience_of(model, advantage, beta=0.0, old_logprobs=None, ref=None, defer=False):
    """The experience from ``model``'s forward, or deferred, or completed from given
    ``old_logprobs`` (no model)."""
    batch = pack_sequences(PROMPTS, RESPONSES, pad_id=0)
    settings = PPOSettings(beta=beta, advantage=advantage, lam=1.0, group_size=2)
    if old_logprobs is None:
        return make_experience(model, ref, batch, SCORES, settings, defer=defer)
    deferred = make_experience(None, ref, batch, SCORES, settings, defer=True)
    return complete_experience(deferred, old_logprobs, None, settings)


def update(model, experience, advantage, epochs=1, vf_coef=0.0, beta=0.0):
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    settings = PPOSettings(
        beta=beta,
        advantage=advantage,
        lam=1.0,
        group_size=2,
        epochs=epochs,
        vf_coef=vf_coef,
        max_grad_norm=0.0,
    )
    return ppo_update(
        model, optimizer, scheduler, experience, settings, torch.Generator().manual_seed(0)
    )


def test_rloo_advantages_and_the_kl_penalty_by_hand():
    # Given old logprobs (no model forward): -1 per token; the reference gives -1.5 per token, so k1 = 0.5 per token and the penalty is beta * 0.5 * len.
    mask = pack_sequences(PROMPTS, RESPONSES, 0)["response_mask"].float()
    old = -1.0 * mask
    ref = -1.5 * mask
    exp = experience_of(None, "rloo", beta=0.2, old_logprobs=old, ref=ref)
    # returns: 1 - 0.2*1.5 = 0.7, 0 - 0.2*1.0 = -0.2, 3 - 0.2*1.0 = 2.8, 1 - 0.2*0.5 = 0.9
    # leave-one-out in groups of 2: 0.7 - (-0.2), -0.2 - 0.7, 2.8 - 0.9, 0.9 - 2.8
    expected = torch.tensor([0.9, -0.9, 1.9, -1.9])
    assert exp.advantages[:, 0] == pytest.approx(expected, abs=1e-6)
    assert exp.advantages[0].tolist() == pytest.approx([0.9] * 3)
    assert exp.advantages[3].tolist() == pytest.approx([-1.9, 0.0, 0.0])  # padding stays 0
    assert exp.kl.sum(dim=1).tolist() == pytest.approx([1.5, 1.0, 1.0, 0.5])
    assert exp.is_weights is None  # no engine logprobs in the batch, no TIS


def test_without_a_reference_the_kl_is_zero():
    mask = pack_sequences(PROMPTS, RESPONSES, 0)["response_mask"].float()
    exp = experience_of(None, "grpo", beta=0.5, old_logprobs=-mask)
    assert exp.kl.abs().sum() == 0


def test_one_step_on_its_own_forward_equals_the_step_after_an_old_logprob_pass():
    torch.manual_seed(0)
    model = load_causal_lm("tiny")
    twin = load_causal_lm("tiny")
    twin.load_state_dict(model.state_dict())
    batch = pack_sequences(PROMPTS, RESPONSES, 0)
    with torch.no_grad():
        exact = response_forward(model, batch, 1.0, with_values=False)["logprobs"]
    with_pass = experience_of(model, "grpo")
    on_policy = experience_of(twin, "grpo", defer=True)
    assert not on_policy.complete and on_policy.advantages is None
    stats_a, stats_b = update(model, with_pass, "grpo"), update(twin, on_policy, "grpo")
    assert torch.allclose(with_pass.advantages, on_policy.advantages, atol=1e-6)
    assert stats_a["clip_fraction"] == stats_b["clip_fraction"] == 0.0
    assert stats_a["policy_loss"] == pytest.approx(stats_b["policy_loss"], abs=1e-6)
    for (name, a), b in zip(model.state_dict().items(), twin.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name
    # the update filled in the old logprobs it used: the policy before the step
    assert torch.allclose(on_policy.old_logprobs, exact * with_pass.mask, atol=1e-6)


def test_without_old_logprobs_more_than_one_step_is_refused():
    exp = experience_of(None, "grpo", defer=True)
    with pytest.raises(ValueError, match="one epoch of one minibatch"):
        update(load_causal_lm("tiny"), exp, "grpo", epochs=2)


def test_gae_on_its_own_forward_equals_the_step_after_an_old_logprob_and_value_pass():
    # One epoch of one minibatch: the update's forward gives the old policy and the old values,
    # so skipping the experience forward changes nothing (the value loss included).
    torch.manual_seed(0)
    model = PolicyWithValue(load_causal_lm("tiny"), load_causal_lm("tiny"))
    torch.nn.init.normal_(model.value_head.linear.weight, std=0.1)
    twin = PolicyWithValue(load_causal_lm("tiny"), load_causal_lm("tiny"))
    twin.load_state_dict(model.state_dict())
    batch = pack_sequences(PROMPTS, RESPONSES, 0)
    with torch.no_grad():
        exact = response_forward(model.policy, batch, 1.0, with_values=False)["logprobs"]
    ref = exact - 0.1
    with_pass = experience_of(model, "gae", beta=0.5, ref=ref)
    on_policy = experience_of(twin, "gae", beta=0.5, ref=ref, defer=True)
    assert on_policy.advantages is None and on_policy.values is None
    stats_a = update(model, with_pass, "gae", vf_coef=0.5, beta=0.5)
    stats_b = update(twin, on_policy, "gae", vf_coef=0.5, beta=0.5)
    assert torch.allclose(on_policy.kl, with_pass.kl, atol=1e-6)
    for key in ("policy_loss", "value_loss", "value_clip_fraction", "clip_fraction"):
        assert stats_a[key] == pytest.approx(stats_b[key], abs=1e-6), key
    assert torch.allclose(on_policy.advantages, with_pass.advantages, atol=1e-5)
    assert torch.allclose(on_policy.returns, with_pass.returns, atol=1e-5)
    for (name, a), b in zip(model.state_dict().items(), twin.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name


def precision_step(precision: str, scaler=None, epochs=1, minibatches=1):
    """One GRPO update of the tiny policy in ``precision``; returns (stats, model)."""
    torch.manual_seed(0)
    model = load_causal_lm("tiny")
    batch = pack_sequences(PROMPTS, RESPONSES, 0)
    settings = PPOSettings(
        advantage="grpo",
        group_size=2,
        epochs=epochs,
        num_minibatches=minibatches,
        precision=precision,
        max_grad_norm=1.0,
    )
    experience = make_experience(model, None, batch, SCORES, settings)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    generator = torch.Generator().manual_seed(0)
    stats = ppo_update(model, optimizer, scheduler, experience, settings, generator, scaler)
    return stats, model


def test_bf16_autocast_keeps_float32_weights_and_tracks_the_float32_step():
    full, full_model = precision_step("fp32")
    half, half_model = precision_step("bf16")
    assert all(p.dtype == torch.float32 for p in half_model.parameters())
    assert half["policy_loss"] == pytest.approx(full["policy_loss"], abs=0.02)
    assert half["grad_norm"] == pytest.approx(full["grad_norm"], rel=0.05)
    start = torch.cat([p.flatten() for p in load_causal_lm("tiny").parameters()])
    steps = [
        torch.cat([p.detach().flatten() for p in m.parameters()]) - start
        for m in (half_model, full_model)
    ]
    cosine = torch.nn.functional.cosine_similarity(steps[0], steps[1], dim=0).item()
    assert 0.9 < cosine < 1.0  # bf16 rounding bends the update a little, not its direction


def test_fp16_loss_scaler_skips_overflowing_steps_and_halves_its_scale():
    # 2^40 times the loss overflows fp16 activation gradients: each such step is skipped and
    # halves the scale, until the scaled gradients fit and the steps go through.
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**40, growth_interval=10_000)
    stats, model = precision_step("fp16", scaler, epochs=8, minibatches=4)
    skipped = stats["skipped_steps"]
    assert 1 <= skipped < 32
    assert scaler.get_scale() == 2.0**40 / 2**skipped
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert scaler.state_dict()["scale"] == scaler.get_scale()  # what the checkpoint keeps


def test_a_round_of_only_fp16_overflows_leaves_the_weights_and_lowers_the_scale():
    # One step a round, and it overflows: no update, no error (an ordinary fp16 event).
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**60)
    before = [p.detach().clone() for p in load_causal_lm("tiny").parameters()]
    stats, model = precision_step("fp16", scaler)
    assert stats["skipped_steps"] == stats["overflow_steps"] == 1
    assert scaler.get_scale() == 2.0**59
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_values_stay_float32_under_bf16_autocast():
    model = PolicyWithValue(load_causal_lm("tiny"))
    batch = pack_sequences(PROMPTS, RESPONSES, 0)
    with torch.no_grad(), PPOSettings(precision="bf16").autocast(torch.device("cpu")):
        out = response_forward(model, batch, 1.0, with_values=True)
    assert out["values"].dtype == torch.float32 and out["logprobs"].dtype == torch.float32
