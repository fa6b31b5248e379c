"""The PPO learner's two steps on one rank's shard: build the experience, then update.

No Ray here: plain torch over a packed batch (``models.policy.pack_sequences``). Statistics that
span ranks (whitening, KL) are all-reduced when ``torch.distributed`` is initialised, so N ranks
compute what one rank would on the whole batch.

Experience, per response token t (mask m_t):

- old and reference logprobs at the sampling temperature T: ``log_softmax(logits / T)[y_t]``
  (with one epoch of one minibatch the old policy is the update's own forward, and the KL
  takes the engine's logprobs: no extra forward; for ``gae`` the update's forward also gives
  the old values, and the advantages are computed from them before the loss);
- ``kl_t = estimator(logp_old_t, logp_ref_t)`` (k1, k2 or k3);
- ``gae``: ``r_t = -beta kl_t`` plus the ADLF score at the last token (``beta = 0`` with
  ``--kl_in_loss``), advantages by GAE over the value head's ``V(s_t)``, whitened over every
  valid token of the whole batch; returns = A + V;
- ``grpo`` / ``rloo``: a sequence return ``score - beta * sum_t kl_t``, its group baseline
  (GRPO: divided by the group's std; RLOO: leave-one-out mean), the same advantage on every
  token of the response; no value head.

Update: ``ppo_epochs`` passes; each pass shuffles the shard (a generator seeded by the caller)
into equal minibatches and takes one optimizer step per minibatch on

    loss = policy_loss + vf_coef * value_loss - entropy_coef * entropy [+ beta * kl_loss]

A step whose loss or gradient norm is inf/NaN on any rank is skipped on every rank (no optimizer
or scheduler step, the weights stay as they were) and counted in ``skipped_steps``; a round whose
every step is skipped raises ``FloatingPointError``.

Precision (``--bf16``, ``--fp16``): every forward runs under ``torch.autocast`` in that dtype
(weights, gradients and Adam moments stay float32; logprobs and values are computed in float32
from the autocast logits and hidden states). fp16 scales the loss by a ``GradScaler`` and
unscales the gradients before clipping; a step whose scaled gradients overflow is skipped as
above and the scale halves (``scaler.update``), counted in ``overflow_steps`` too, and never
fails the round (a round of only overflows leaves the weights as they were, at a smaller
scale); the scaler's state travels in the checkpoint.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ray_adlf.algo import (
    broadcast_to_tokens,
    gae,
    group_advantages,
    kl_estimate,
    kl_loss,
    masked_mean,
    per_token_rewards,
    policy_loss,
    value_loss,
    whiten,
)
from ray_adlf.models.policy import response_forward


def _all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        values = values.clone()
        dist.all_reduce(values)
    return values


def global_masked_mean(x: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean of ``x`` [B, T] over valid tokens of every rank."""
    total = _all_reduce_sum(torch.stack([(x * mask).sum(), mask.sum()]).double())
    return (total[0] / total[1].clamp(min=1)).item()


def global_row_mean(x: torch.Tensor) -> float:
    """Mean of ``x`` [B] over the rows of every rank."""
    total = _all_reduce_sum(
        torch.stack([x.sum(), torch.tensor(float(x.numel()), device=x.device)]).double()
    )
    return (total[0] / total[1].clamp(min=1)).item()


def global_masked_whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``algo.whiten`` with the mean and biased var over valid tokens of every rank. [B, T]."""
    mask = mask.to(x.dtype)
    sums = _all_reduce_sum(
        torch.stack([(x * mask).sum(), (x * x * mask).sum(), mask.sum()]).double()
    )
    count = sums[2].clamp(min=1)
    mean = sums[0] / count
    var = (sums[1] / count - mean * mean).clamp(min=0)
    return whiten(x, mask, mean.to(x.dtype), var.to(x.dtype), eps)


def finite_on_every_rank(loss: torch.Tensor, grad_norm: torch.Tensor) -> tuple[bool, bool]:
    """Whether the loss, and the gradient norm, are finite on every rank (one all-reduce)."""
    bad = torch.stack([~torch.isfinite(loss), ~torch.isfinite(grad_norm)]).float()
    loss_bad, grads_bad = _all_reduce_sum(bad.to(grad_norm.device)).tolist()
    return loss_bad == 0, grads_bad == 0


@dataclass(frozen=True)
class PPOSettings:
    """The scalars the experience and the update read (``--flag`` names in parentheses):
    sampling ``temperature``; ``beta`` the round's KL coefficient (the controller's);
    ``kl_estimator`` k1/k2/k3; ``kl_in_loss`` (KL as a loss term, not a reward penalty);
    ``advantage`` gae/grpo/rloo with GAE's ``gamma`` / ``lam``; ``group_size`` (samples per
    prompt); ``epochs`` (ppo_epochs) x ``num_minibatches``; ``clip_eps``, ``vf_coef``,
    ``value_clip_eps``, ``entropy_coef``, ``max_grad_norm`` (ppo_max_grad_norm, 0 = off);
    ``precision`` fp32/bf16/fp16 (--bf16, --fp16)."""

    temperature: float = 1.0
    beta: float = 0.0
    kl_estimator: str = "k1"
    kl_in_loss: bool = False
    advantage: str = "gae"
    gamma: float = 1.0
    lam: float = 0.95
    group_size: int = 1
    epochs: int = 1
    num_minibatches: int = 1
    clip_eps: float = 0.2
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


@dataclass
class Experience:
    """One rank's shard, ready for PPO. Token tensors are [B, T]; ``scores`` [B].

    ``old_logprobs`` None: the update's own forward is the old policy (one epoch of one
    minibatch); ``ppo_update`` fills it in from that forward, and for ``gae`` the ``values``,
    ``advantages`` and ``returns`` too (None until then; ``token_rewards`` [B, T] are what
    GAE runs on)."""

    batch: dict[str, torch.Tensor]
    mask: torch.Tensor
    old_logprobs: torch.Tensor | None
    ref_logprobs: torch.Tensor
    kl: torch.Tensor
    advantages: torch.Tensor | None
    values: torch.Tensor | None
    returns: torch.Tensor | None
    scores: torch.Tensor
    token_rewards: torch.Tensor | None = None

    def rows(self, index: torch.Tensor) -> Experience:
        """The experience of rows ``index``."""
        pick = lambda t: None if t is None else t[index]  # noqa: E731
        return Experience(
            batch={k: v[index] for k, v in self.batch.items()},
            mask=self.mask[index],
            old_logprobs=pick(self.old_logprobs),
            ref_logprobs=self.ref_logprobs[index],
            kl=self.kl[index],
            advantages=pick(self.advantages),
            values=pick(self.values),
            returns=pick(self.returns),
            scores=self.scores[index],
            token_rewards=pick(self.token_rewards),
        )


def gae_advantages(
    token_rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, settings: PPOSettings
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE over ``values`` [B, T], whitened over every valid token of every rank; returns
    ``(advantages, returns)``, both [B, T]."""
    raw, returns = gae(token_rewards, values, mask, settings.gamma, settings.lam)
    return global_masked_whiten(raw, mask), returns


@torch.no_grad()
def make_experience(
    model,
    ref_logprobs: torch.Tensor | None,
    batch: dict[str, torch.Tensor],
    scores: torch.Tensor,
    settings: PPOSettings,
    old_logprobs: torch.Tensor | None = None,
) -> Experience:
    """Old logprobs (and values) from ``model``, KL, shaped rewards and advantages (module doc).

    ``ref_logprobs`` [B, T] come from the frozen reference (None: no KL, it is 0);
    ``scores`` [B] are the ADLF rewards. ``old_logprobs`` [B, T] (the engine's) stand in for
    the old policy in the KL and skip the forward: the update then takes the old policy (and
    for ``gae`` the old values) from its own forward. Rows of one prompt group must be
    adjacent and on one rank for ``grpo``/``rloo``.
    """
    mask = batch["response_mask"].float()
    advantage, temperature = settings.advantage, settings.temperature
    out = {}
    if old_logprobs is None:
        with settings.autocast(batch["input_ids"].device):
            out = response_forward(model, batch, temperature, with_values=advantage == "gae")
    policy_logprobs = (out["logprobs"] if old_logprobs is None else old_logprobs) * mask
    if ref_logprobs is None:
        ref_logprobs = policy_logprobs
    kl = kl_estimate(policy_logprobs, ref_logprobs, settings.kl_estimator) * mask
    penalty = 0.0 if settings.kl_in_loss else settings.beta
    values = returns = advantages = token_rewards = None
    if advantage == "gae":
        token_rewards = per_token_rewards(scores, kl, mask, penalty)
        if old_logprobs is None:
            values = out["values"] * mask
            advantages, returns = gae_advantages(token_rewards, values, mask, settings)
    else:
        sequence_return = scores - penalty * kl.sum(dim=1)
        per_sequence = group_advantages(
            sequence_return, settings.group_size, advantage, normalize_std=advantage == "grpo"
        )
        advantages = broadcast_to_tokens(per_sequence, mask)
    return Experience(
        batch,
        mask,
        None if old_logprobs is not None else policy_logprobs,
        ref_logprobs * mask,
        kl,
        advantages,
        values,
        returns,
        scores,
        token_rewards,
    )


def ppo_update(
    model,
    optimizer,
    scheduler,
    experience: Experience,
    settings: PPOSettings,
    generator: torch.Generator,
    scaler: torch.amp.GradScaler | None = None,
) -> dict[str, float]:
    """``settings.epochs`` passes of minibatch PPO over ``experience``; returns mean loss
    statistics. ``scaler``: fp16's loss scaler (module docstring)."""
    epochs, num_minibatches = settings.epochs, settings.num_minibatches
    rows = experience.mask.shape[0]
    on_policy = experience.old_logprobs is None
    if on_policy and (epochs, num_minibatches) != (1, 1):
        raise ValueError("without old logprobs the update must be one epoch of one minibatch")
    totals: dict[str, float] = {}
    steps = skipped = overflowed = 0
    for _ in range(epochs):
        order = torch.randperm(rows, generator=generator)
        for index in torch.tensor_split(order, num_minibatches):
            part = experience if on_policy else experience.rows(index)
            with_values = part.values is not None or part.advantages is None
            with settings.autocast(part.mask.device):
                out = response_forward(
                    model, part.batch, settings.temperature, with_values, with_entropy=True
                )
            if on_policy:  # the old policy (and old values) are this forward's
                part.old_logprobs = out["logprobs"].detach() * part.mask
            if part.advantages is None:
                part.values = out["values"].detach() * part.mask
                part.advantages, part.returns = gae_advantages(
                    part.token_rewards, part.values, part.mask, settings
                )
            loss, stats = policy_loss(
                out["logprobs"], part.old_logprobs, part.advantages, part.mask, settings.clip_eps
            )
            entropy = masked_mean(out["entropy"], part.mask)
            loss = loss - settings.entropy_coef * entropy
            step_stats = {
                "policy_loss": loss.item(),
                "entropy": entropy.item(),
                "clip_fraction": stats["clip_fraction"].item(),
                "approx_kl": stats["approx_kl"].item(),
            }
            if part.values is not None:
                v_loss, v_stats = value_loss(
                    out["values"], part.values, part.returns, part.mask, settings.value_clip_eps
                )
                loss = loss + settings.vf_coef * v_loss
                step_stats.update(
                    value_loss=v_loss.item(), value_clip_fraction=v_stats["clip_fraction"].item()
                )
            if settings.kl_in_loss:
                kl_term = kl_loss(
                    out["logprobs"], part.ref_logprobs, part.mask, settings.kl_estimator
                )
                loss = loss + settings.beta * kl_term
                step_stats["kl_loss"] = kl_term.item()
            optimizer.zero_grad(set_to_none=True)
            if scaler is None:
                loss.backward()
            else:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
            max_norm = settings.max_grad_norm if settings.max_grad_norm > 0 else float("inf")
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
            if hasattr(grad_norm, "full_tensor"):  # FSDP2: a DTensor, replicated on every rank
                grad_norm = grad_norm.full_tensor()
            loss_finite, grads_finite = finite_on_every_rank(loss.detach(), grad_norm)
            if not (loss_finite and grads_finite):
                skipped += 1
                if scaler is not None:
                    scaler.update()  # a smaller scale next
                    overflowed += loss_finite  # the scaled gradients overflowed: expected
                continue
            step_stats["grad_norm"] = grad_norm.item()
            if scaler is None:
                optimizer.step()
            else:
                scaler.step(optimizer)
                scaler.update()
            scheduler.step()
            for key, value in step_stats.items():
                totals[key] = totals.get(key, 0.0) + value
            steps += 1
    if steps == 0 and skipped > overflowed:
        raise FloatingPointError(
            f"every one of the {skipped} PPO steps of this round had a non-finite loss or "
            "gradient, so the weights were left as they were; lower --ppo_learning_rate, set "
            "--ppo_max_grad_norm, or check the rewards for inf/NaN"
        )
    means = {key: value / steps for key, value in totals.items()} if steps else {}
    return {**means, "skipped_steps": skipped, "overflow_steps": overflowed}
