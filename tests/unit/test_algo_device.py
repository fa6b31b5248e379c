"""Every tensor the RL math creates follows its inputs' device.

The functions run on ``meta`` tensors (shapes and dtypes, no data): a tensor made on the CPU
inside one of them (``torch.arange(n)``, ``torch.zeros(...)`` without ``device=``) meets a
``meta`` input and raises, as it would meet a CUDA input on a GPU. Functions that need values
(``.item()``, boolean indexing) cannot run on ``meta`` and are not listed.
"""

import pytest
import torch

from ray_adlf import algo
from ray_adlf.models.policy import response_positions

B, T, V, GROUP = 4, 6, 11, 2


def meta(*shape: int, dtype=torch.float32) -> torch.Tensor:
    return torch.empty(shape, dtype=dtype, device="meta")


MASK = meta(B, T, dtype=torch.bool)

CALLS = {
    "gae": lambda: algo.gae(meta(B, T), meta(B, T), MASK, 1.0, 0.95),
    "group_advantages grpo": lambda: algo.group_advantages(meta(B), GROUP, "grpo", True),
    "group_advantages rloo": lambda: algo.group_advantages(meta(B), GROUP, "rloo", False),
    "broadcast_to_tokens": lambda: algo.broadcast_to_tokens(meta(B), MASK),
    "per_token_rewards": lambda: algo.per_token_rewards(meta(B), meta(B, T), MASK, 0.1),
    "masked_whiten": lambda: algo.masked_whiten(meta(B, T), MASK),
    "kl_estimate k3": lambda: algo.kl_estimate(meta(B, T), meta(B, T), "k3", MASK),
    "kl_loss k2": lambda: algo.kl_loss(meta(B, T), meta(B, T), MASK, "k2"),
    "logprobs_from_logits": lambda: algo.logprobs_from_logits(
        meta(B, T, V), meta(B, T, dtype=torch.long), 0.7
    ),
    "entropy_from_logits": lambda: algo.entropy_from_logits(meta(B, T, V)),
    "policy_loss dual clip": lambda: algo.policy_loss(
        meta(B, T), meta(B, T), meta(B, T), MASK, 0.2, clip_eps_high=0.28, dual_clip=3.0
    ),
    "policy_loss constant length": lambda: algo.policy_loss(
        meta(B, T), meta(B, T), meta(B, T), MASK, 0.2, loss_agg_mode="seq_mean_token_sum"
    ),
    "value_loss": lambda: algo.value_loss(meta(B, T), meta(B, T), meta(B, T), MASK, 0.2),
    "gspo_policy_loss": lambda: algo.gspo_policy_loss(meta(B, T), meta(B, T), meta(B), MASK, 3e-4),
    "truncated_is_weights": lambda: algo.truncated_is_weights(meta(B, T), meta(B, T), MASK, 2.0),
    "discounted_returns": lambda: algo.discounted_returns(meta(B, T), MASK, 0.99),
    "reinforce_pp_baseline": lambda: algo.reinforce_pp_baseline_advantages(
        meta(B), meta(B, T), MASK, GROUP, 0.1
    ),
    "overlong_penalty": lambda: algo.overlong_penalty(meta(B, dtype=torch.long), 32, 8),
    "response_positions": lambda: response_positions(meta(B, dtype=torch.long), T),
}


def tensors_in(result) -> list[torch.Tensor]:
    if isinstance(result, torch.Tensor):
        return [result]
    if isinstance(result, dict):
        return [v for v in result.values() if isinstance(v, torch.Tensor)]
    return [t for part in result for t in tensors_in(part)]


@pytest.mark.parametrize("name", sorted(CALLS))
def test_outputs_stay_on_the_inputs_device(name):
    outputs = tensors_in(CALLS[name]())
    assert outputs and all(t.device.type == "meta" for t in outputs), name
