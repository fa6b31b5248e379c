"""The scalars one round's experience and PPO update read, as one frozen value.

``RLLearner`` builds it from the config every round (``rl_learner.ppo_settings``); the
experience (``train.experience``) and the update (``train.ppo_learner``) read nothing else, so
both run without Ray or a config in the unit tests.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PPOSettings:
    """``--flag`` names in parentheses where they differ.

    - ``temperature``: the sampling temperature, applied to the learner's logits too;
    - ``beta``: the round's KL coefficient (the controller's); ``kl_estimator`` k1/k2/k3;
      ``kl_in_loss``: KL as a loss term, not a reward penalty;
    - ``advantage``: gae / grpo / rloo / reinforce_pp / reinforce_pp_baseline, with GAE's and
      REINFORCE++'s discount ``gamma`` and GAE's ``lam``; ``group_size`` (samples per prompt);
      ``group_std_normalize``: grpo divides by the group's std (off: Dr. GRPO);
    - ``epochs`` (ppo_epochs) x ``num_minibatches`` optimizer steps;
    - ``policy_loss``: ppo (token ratio) or gspo (sequence ratio); ``clip_eps`` the lower clip,
      ``clip_eps_high`` the upper one (0: ``clip_eps``; DAPO's clip-higher), ``dual_clip`` the
      dual-clip bound c > 1 (0: off); ``loss_agg`` the aggregation (``algo.aggregation``) and
      ``max_new_tokens`` its constant length for ``seq_mean_token_sum_norm``;
    - ``tis_cap``: truncated importance sampling of the engine's samples (0: off);
    - ``vf_coef``, ``value_clip_eps``, ``entropy_coef``, ``max_grad_norm`` (ppo_max_grad_norm,
      0 = off); ``precision`` fp32 / bf16 / fp16 (--bf16, --fp16).
    """

    temperature: float = 1.0
    beta: float = 0.0
    kl_estimator: str = "k1"
    kl_in_loss: bool = False
    advantage: str = "gae"
    gamma: float = 1.0
    lam: float = 0.95
    group_size: int = 1
    group_std_normalize: bool = True
    epochs: int = 1
    num_minibatches: int = 1
    policy_loss: str = "ppo"
    clip_eps: float = 0.2
    clip_eps_high: float = 0.0
    dual_clip: float = 0.0
    loss_agg: str = "token_mean"
    max_new_tokens: int = 0
    tis_cap: float = 0.0
    vf_coef: float = 0.1
    value_clip_eps: float = 0.2
    entropy_coef: float = 0.0
    max_grad_norm: float = 1.0
    precision: str = "fp32"

    def autocast(self, device: torch.device):
        """The forward's autocast context for ``precision`` (fp32: none)."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(device.type, dtype=dtype)
