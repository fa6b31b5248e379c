"""One rank's shard of a round made ready for the PPO update: old logprobs, KL, advantages and
importance weights.

No Ray here: plain torch over a packed batch (``models.policy.pack_sequences``); statistics that
span ranks (whitening) are all-reduced (``train.rank_stats``), so N ranks compute what one rank
would on the whole batch. Per response token t (mask m_t), from the old policy's logprobs
``logp_old`` (the LEARNER's, at the sampling temperature T: ``log_softmax(logits / T)[y_t]``)
and, for ``gae``, its values ``V(s_t)``:

- ``kl_t = estimator(logp_old_t, logp_ref_t)`` (k1, k2 or k3; 0 without a reference);
  ``beta`` below is the controller's, 0 with ``--kl_in_loss`` (the KL is then a loss term);
- ``--advantage``:

  - ``gae``: ``r_t = -beta kl_t`` plus the ADLF score at the last token, GAE over ``V``,
    whitened over every valid token of every rank; returns = A + V;
  - ``grpo`` / ``rloo``: the sequence return ``score - beta sum_t kl_t``, less its group
    baseline (grpo: divided by the group's std, unless ``--no-group_std_normalize``, which with
    ``--loss_agg seq_mean_token_sum_norm`` is Dr. GRPO), the same advantage on every token;
  - ``reinforce_pp`` (REINFORCE++): ``r_t`` as for gae, returns-to-go
    ``G_t = r_t + gamma G_{t+1}``, whitened over every valid token of every rank (no critic, no
    group baseline); ``reinforce_pp_baseline``: the scores lose their group mean first;

- truncated importance sampling (``--tis_cap C > 0``, when the batch carries the engine's
  logprobs): ``w_t = min(exp(logp_old_t - logp_engine_t), C)``, which the policy loss multiplies
  in. It corrects what separates the sampling engine from the learner's old policy: the policy
  lag of asynchronous rollouts and the engine's own numerics (``algo.importance``).

``make_experience`` runs the old-policy forward, except with ``defer=True`` (one epoch of one
minibatch): the update's own forward is then the old policy (its ratio is exactly 1) and
``ppo_learner.ppo_update`` completes the experience from it with ``complete_experience``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ray_adlf.algo import (
    broadcast_to_tokens,
    discounted_returns,
    gae,
    group_advantages,
    kl_estimate,
    per_token_rewards,
    truncated_is_weights,
)
from ray_adlf.models.policy import response_forward
from ray_adlf.train.ppo_settings import PPOSettings
from ray_adlf.train.rank_stats import global_masked_whiten


@dataclass
class Experience:
    """One rank's shard, ready for PPO. Token tensors are [B, T]; ``scores`` [B].

    ``old_logprobs`` and everything derived from them (``kl``, ``advantages``, ``values``,
    ``returns``, ``token_rewards``, ``is_weights``) are None until ``complete_experience``;
    ``ref_logprobs`` None: no reference (the KL is 0); ``is_weights`` stays None without TIS."""

    batch: dict[str, torch.Tensor]
    mask: torch.Tensor
    scores: torch.Tensor
    ref_logprobs: torch.Tensor | None
    old_logprobs: torch.Tensor | None = None
    kl: torch.Tensor | None = None
    advantages: torch.Tensor | None = None
    values: torch.Tensor | None = None
    returns: torch.Tensor | None = None
    token_rewards: torch.Tensor | None = None
    is_weights: torch.Tensor | None = None

    @property
    def complete(self) -> bool:
        """Whether the old policy's quantities are in (``complete_experience`` ran)."""
        return self.old_logprobs is not None

    def rows(self, index: torch.Tensor) -> Experience:
        """The experience of rows ``index``."""
        pick = lambda t: None if t is None else t[index]  # noqa: E731
        return Experience(
            batch={k: v[index] for k, v in self.batch.items()},
            mask=self.mask[index],
            scores=self.scores[index],
            ref_logprobs=pick(self.ref_logprobs),
            old_logprobs=pick(self.old_logprobs),
            kl=pick(self.kl),
            advantages=pick(self.advantages),
            values=pick(self.values),
            returns=pick(self.returns),
            token_rewards=pick(self.token_rewards),
            is_weights=pick(self.is_weights),
        )


def token_advantages(
    experience: Experience, settings: PPOSettings
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """``(advantages, returns, token_rewards)`` of a completed experience's KL and scores for
    ``settings.advantage`` (module docstring); returns and token rewards are None for the group
    baselines. All [B, T], 0 at masked positions."""
    mask, scores, kl = experience.mask, experience.scores, experience.kl
    beta = 0.0 if settings.kl_in_loss else settings.beta
    advantage = settings.advantage
    if advantage == "gae":
        token_rewards = per_token_rewards(scores, kl, mask, beta)
        raw, returns = gae(token_rewards, experience.values, mask, settings.gamma, settings.lam)
        return global_masked_whiten(raw, mask), returns, token_rewards
    if advantage in ("reinforce_pp", "reinforce_pp_baseline"):
        if advantage == "reinforce_pp_baseline":
            scores = group_advantages(scores, settings.group_size, "grpo", normalize_std=False)
        token_rewards = per_token_rewards(scores, kl, mask, beta)
        returns = discounted_returns(token_rewards, mask, settings.gamma)
        return global_masked_whiten(returns, mask), returns, token_rewards
    if advantage not in ("grpo", "rloo"):
        raise ValueError(f"unknown advantage estimator {advantage!r}")
    sequence_return = scores - beta * kl.sum(dim=1)
    per_sequence = group_advantages(
        sequence_return,
        settings.group_size,
        advantage,
        normalize_std=advantage == "grpo" and settings.group_std_normalize,
    )
    return broadcast_to_tokens(per_sequence, mask), None, None


@torch.no_grad()
def complete_experience(
    experience: Experience,
    old_logprobs: torch.Tensor,
    values: torch.Tensor | None,
    settings: PPOSettings,
) -> Experience:
    """Fill in what the old policy determines, in place, from its ``old_logprobs`` [B, T] (and
    for ``gae`` its ``values`` [B, T]): KL, advantages, returns and the TIS weights."""
    mask = experience.mask
    experience.old_logprobs = old_logprobs.detach() * mask
    if experience.ref_logprobs is None:
        experience.ref_logprobs = experience.old_logprobs
    experience.kl = (
        kl_estimate(experience.old_logprobs, experience.ref_logprobs, settings.kl_estimator) * mask
    )
    if settings.advantage == "gae":
        experience.values = values.detach() * mask
    experience.advantages, experience.returns, experience.token_rewards = token_advantages(
        experience, settings
    )
    engine = experience.batch.get("engine_logprobs")
    if settings.tis_cap > 0 and engine is not None:
        experience.is_weights, _ = truncated_is_weights(
            experience.old_logprobs, engine, mask, settings.tis_cap
        )
    return experience


@torch.no_grad()
def make_experience(
    model,
    ref_logprobs: torch.Tensor | None,
    batch: dict[str, torch.Tensor],
    scores: torch.Tensor,
    settings: PPOSettings,
    defer: bool = False,
) -> Experience:
    """The experience of ``batch`` (module docstring): the old policy's forward through
    ``model`` and ``complete_experience``, or with ``defer`` only the batch (the update
    completes it from its own forward).

    ``ref_logprobs`` [B, T] come from the frozen reference (None: no KL); ``scores`` [B] are
    the ADLF rewards. Rows of one prompt group must be adjacent and on one rank for the group
    baselines.
    """
    mask = batch["response_mask"].float()
    ref = None if ref_logprobs is None else ref_logprobs * mask
    experience = Experience(batch, mask, scores, ref)
    if defer:
        return experience
    with settings.autocast(batch["input_ids"].device):
        out = response_forward(
            model, batch, settings.temperature, with_values=settings.advantage == "gae"
        )
    return complete_experience(experience, out["logprobs"], out.get("values"), settings)


@torch.no_grad()
def sample_statistics(experience: Experience, has_reference: bool) -> dict[str, list]:
    """Per row of a completed experience, for the ledger: ``advantage`` (mean over the
    response tokens, ``sum_t m_t A_t / sum_t m_t``), ``kl`` (``sum_t kl_t``; None per row
    without a reference), ``learner_logprob`` and ``engine_logprob`` (means of the old
    policy's and the engine's logprobs). Each a list of B values."""
    mask = experience.mask
    tokens = mask.sum(dim=1).clamp(min=1)

    def row_mean(x: torch.Tensor) -> list[float]:
        return ((x * mask).sum(dim=1) / tokens).tolist()

    rows = mask.shape[0]
    return {
        "advantage": row_mean(experience.advantages),
        "kl": experience.kl.sum(dim=1).tolist() if has_reference else [None] * rows,
        "learner_logprob": row_mean(experience.old_logprobs),
        "engine_logprob": row_mean(experience.batch["engine_logprobs"]),
    }
