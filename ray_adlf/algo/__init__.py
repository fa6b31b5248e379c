"""Pure torch math for PPO / RLHF: masked statistics, KL estimators and controllers, token
rewards, GAE and group baselines, PPO losses and the contrastive (InfoNCE) loss.

No Ray, no config objects: plain functions over tensors and scalars, shapes in each docstring.
"""

from ray_adlf.algo.advantages import broadcast_to_tokens, gae, group_advantages
from ray_adlf.algo.contrastive import info_nce_loss, masked_mean_pool
from ray_adlf.algo.kl import (
    AdaptiveKLController,
    FixedKLController,
    kl_estimate,
    kl_k1,
    kl_k2,
    kl_k3,
)
from ray_adlf.algo.losses import (
    entropy_from_logits,
    kl_loss,
    logprobs_from_logits,
    policy_loss,
    value_loss,
)
from ray_adlf.algo.masked import masked_mean, masked_sum, masked_var, masked_whiten
from ray_adlf.algo.rewards import per_token_rewards

__all__ = [
    "AdaptiveKLController",
    "FixedKLController",
    "broadcast_to_tokens",
    "entropy_from_logits",
    "gae",
    "group_advantages",
    "info_nce_loss",
    "kl_estimate",
    "kl_k1",
    "kl_k2",
    "kl_k3",
    "kl_loss",
    "logprobs_from_logits",
    "masked_mean",
    "masked_mean_pool",
    "masked_sum",
    "masked_var",
    "masked_whiten",
    "per_token_rewards",
    "policy_loss",
    "value_loss",
]
