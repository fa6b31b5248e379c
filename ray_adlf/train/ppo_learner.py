"""The PPO update on one rank's experience (``train.experience``).

No Ray here: plain torch. ``ppo_epochs`` passes; each pass shuffles the shard (a generator
seeded by the caller) into equal minibatches and takes one optimizer step per minibatch on

    loss = policy_loss + vf_coef * value_loss - entropy_coef * entropy [+ beta * kl_loss]

- ``--policy_loss ppo``: ``algo.policy_loss``, the token-ratio clipped surrogate with
  DAPO's clip-higher (``--clip_eps`` low, ``--clip_eps_high`` high), the dual clip
  (``--dual_clip``) and the TIS weights; ``gspo``: ``algo.gspo_policy_loss``, the clipped
  sequence ratio (Zheng et al. 2025) with the same weights;
- either is reduced by ``--loss_agg`` (``algo.aggregate_loss``) with the token and sequence
  counts of the whole minibatch over every rank (``rank_stats.loss_counts_per_rank``), so the
  ranks' averaged gradient is the whole minibatch's;
- the value loss (gae only) is PPO2's clipped one; the KL loss term with ``--kl_in_loss``.

An experience that is not complete (``make_experience(..., defer=True)``: one epoch of one
minibatch) is completed from the update's own forward, which is the old policy: its ratio is
exactly 1, and it gives the old values, the KL and the advantages before the loss.

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

import torch

from ray_adlf.algo import gspo_policy_loss, kl_loss, masked_mean, policy_loss, value_loss
from ray_adlf.models.policy import response_forward
from ray_adlf.train.experience import Experience, complete_experience
from ray_adlf.train.ppo_settings import PPOSettings
from ray_adlf.train.rank_stats import finite_on_every_rank, loss_counts_per_rank


def surrogate_loss(
    logprobs: torch.Tensor, part: Experience, settings: PPOSettings
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The policy loss of a completed minibatch ``part`` for ``settings.policy_loss``, with
    its clip statistics. logprobs: [B, T] of the current policy -> scalar."""
    tokens, sequences = loss_counts_per_rank(part.mask)
    eps_high = settings.clip_eps_high or settings.clip_eps
    aggregation = dict(
        loss_agg_mode=settings.loss_agg,
        constant_length=settings.max_new_tokens or None,
        global_token_count=tokens,
        global_sequence_count=sequences,
    )
    if settings.policy_loss == "gspo":
        return gspo_policy_loss(
            logprobs,
            part.old_logprobs,
            part.advantages,
            part.mask,
            settings.clip_eps,
            eps_high,
            is_weights=part.is_weights,
            **aggregation,
        )
    return policy_loss(
        logprobs,
        part.old_logprobs,
        part.advantages,
        part.mask,
        settings.clip_eps,
        clip_eps_high=eps_high,
        dual_clip=settings.dual_clip or None,
        is_weights=part.is_weights,
        **aggregation,
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
    on_policy = not experience.complete
    if on_policy and (epochs, num_minibatches) != (1, 1):
        raise ValueError("without old logprobs the update must be one epoch of one minibatch")
    totals: dict[str, float] = {}
    steps = skipped = overflowed = 0
    for _ in range(epochs):
        order = torch.randperm(rows, generator=generator)
        for index in torch.tensor_split(order, num_minibatches):
            part = experience if on_policy else experience.rows(index)
            with_values = settings.advantage == "gae"
            with settings.autocast(part.mask.device):
                out = response_forward(
                    model, part.batch, settings.temperature, with_values, with_entropy=True
                )
            if on_policy:  # the old policy (and old values) are this forward's
                complete_experience(part, out["logprobs"], out.get("values"), settings)
            loss, stats = surrogate_loss(out["logprobs"], part, settings)
            entropy = masked_mean(out["entropy"], part.mask)
            loss = loss - settings.entropy_coef * entropy
            step_stats = {
                "policy_loss": loss.item(),
                "entropy": entropy.item(),
                **{key: value.item() for key, value in stats.items()},
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
