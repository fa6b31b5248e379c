"""Pure torch math for PPO / RLHF: masked statistics, KL estimators and controllers, token
rewards, GAE, group baselines and REINFORCE++ advantages, PPO losses (clip-higher, dual clip,
truncated importance weights), loss aggregation modes (token / sequence means, Dr. GRPO), GSPO,
DAPO's dynamic-sampling and overlong-shaping helpers, and the contrastive (InfoNCE) loss.

No Ray, no config objects: plain functions over tensors and scalars, shapes in each docstring.
"""

from ray_adlf.algo.advantages import broadcast_to_tokens, gae, group_advantages
from ray_adlf.algo.aggregation import LOSS_AGG_MODES, aggregate_loss
from ray_adlf.algo.contrastive import info_nce_loss, masked_mean_pool
from ray_adlf.algo.dapo import groups_with_reward_variance, overlong_penalty, select_groups
from ray_adlf.algo.gspo import gspo_policy_loss
from ray_adlf.algo.importance import truncated_is_weights
from ray_adlf.algo.kl import (
    LOG_RATIO_BOUND,
    AdaptiveKLController,
    FixedKLController,
    kl_estimate,
    kl_k1,
    kl_k2,
    kl_k3,
    masked_log_ratio,
)
from ray_adlf.algo.losses import (
    entropy_from_logits,
    kl_loss,
    logprobs_from_logits,
    policy_loss,
    value_loss,
)
from ray_adlf.algo.masked import masked_mean, masked_sum, masked_var, masked_whiten, whiten
from ray_adlf.algo.reinforce import (
    discounted_returns,
    reinforce_pp_advantages,
    reinforce_pp_baseline_advantages,
)
from ray_adlf.algo.rewards import per_token_rewards

__all__ = [
    "LOG_RATIO_BOUND",
    "LOSS_AGG_MODES",
    "AdaptiveKLController",
    "FixedKLController",
    "aggregate_loss",
    "broadcast_to_tokens",
    "discounted_returns",
    "entropy_from_logits",
    "gae",
    "group_advantages",
    "groups_with_reward_variance",
    "gspo_policy_loss",
    "info_nce_loss",
    "kl_estimate",
    "kl_k1",
    "kl_k2",
    "kl_k3",
    "kl_loss",
    "logprobs_from_logits",
    "masked_log_ratio",
    "masked_mean",
    "masked_mean_pool",
    "masked_sum",
    "masked_var",
    "masked_whiten",
    "whiten",
    "overlong_penalty",
    "per_token_rewards",
    "policy_loss",
    "reinforce_pp_advantages",
    "reinforce_pp_baseline_advantages",
    "select_groups",
    "truncated_is_weights",
    "value_loss",
]
