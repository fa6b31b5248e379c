"""Reducing a per-token loss ``l [B, T]`` with mask ``m [B, T]`` to the scalar that is optimised.

With ``n_b = sum_t m_bt`` (valid tokens of row b), ``N = sum_b n_b`` and ``S`` = the number of
rows with ``n_b >= 1`` (a row without a valid token is not a sequence of the batch: it adds
nothing and is not counted). Mode names follow veRL's ``loss_agg_mode`` (veRL spells them with
hyphens, ``token-mean``; here underscores):

- ``token_mean``:              ``sum_bt m l / N``                  every token weighs the same
  (DAPO's token-level loss; the PPO default)
- ``seq_mean_token_mean``:     ``1/S sum_b (sum_t m l / n_b)``     every sequence weighs the same
  (GRPO as in DeepSeekMath; GSPO)
- ``seq_mean_token_sum``:      ``1/S sum_b sum_t m l``
- ``seq_mean_token_sum_norm``: ``sum_bt m l / (S * L)``, ``L = constant_length`` (normally
  ``max_new_tokens``): Dr. GRPO's length-independent normalisation (Liu et al. 2025); the
  denominator does not depend on how long the responses are.

Data parallel: each rank only sees its shard, so a local ``N`` or ``S`` makes the average of the
rank losses differ from the loss of the whole batch whenever ranks hold different counts. Pass
``global_token_count`` (``token_mean``) or ``global_sequence_count`` (the three ``seq_*`` modes):
all-reduced SUMS of ``N`` / ``S`` over the ranks (and over the gradient-accumulation micro-batches
of one optimizer step). The function then returns this shard's share ``local sum / global count``,
and the SUM over ranks / micro-batches of these values is the global-batch loss. DDP/FSDP AVERAGE
gradients over the W ranks, so multiply the result by W there (or pass ``count / W``). Each mode
reads only its own denominator; the other one is ignored. Counts below 1 are raised to 1, so an
all-masked batch gives a loss of 0 (that still backpropagates zeros).
"""

from __future__ import annotations

import torch

from ray_adlf.algo.masked import masked_sum

LOSS_AGG_MODES = (
    "token_mean",
    "seq_mean_token_mean",
    "seq_mean_token_sum",
    "seq_mean_token_sum_norm",
)


def _denominator(count: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(count, dtype=like.dtype, device=like.device).clamp(min=1)


def aggregate_loss(
    per_token_loss: torch.Tensor,
    mask: torch.Tensor,
    mode: str,
    constant_length: int | None = None,
    global_token_count: float | torch.Tensor | None = None,
    global_sequence_count: float | torch.Tensor | None = None,
) -> torch.Tensor:
    """Reduce ``per_token_loss`` over the valid tokens by ``mode`` (see the module docstring).

    per_token_loss, mask: [B, T] -> scalar. ``constant_length`` (the ``L`` of
    ``seq_mean_token_sum_norm``, required there) is > 0. ``global_token_count`` /
    ``global_sequence_count``: all-reduced ``N`` / ``S`` replacing the local ones (data parallel).
    Masked positions never enter the result, even when they hold inf or NaN.
    """
    if per_token_loss.dim() != 2 or mask.shape != per_token_loss.shape:
        raise ValueError(
            f"expected per_token_loss and mask of one shape [B, T], got "
            f"{tuple(per_token_loss.shape)} and {tuple(mask.shape)}"
        )
    if mode not in LOSS_AGG_MODES:
        raise ValueError(
            f"unknown loss aggregation mode {mode!r}; expected one of {LOSS_AGG_MODES}"
        )
    valid = mask.bool()
    if mode == "token_mean":
        count = valid.sum() if global_token_count is None else global_token_count
        return masked_sum(per_token_loss, valid) / _denominator(count, per_token_loss)
    lengths = valid.sum(dim=1)
    sequences = (lengths > 0).sum() if global_sequence_count is None else global_sequence_count
    sequences = _denominator(sequences, per_token_loss)
    row_sums = masked_sum(per_token_loss, valid, dim=1)
    if mode == "seq_mean_token_mean":
        return (row_sums / lengths.clamp(min=1).to(per_token_loss.dtype)).sum() / sequences
    if mode == "seq_mean_token_sum":
        return row_sums.sum() / sequences
    if constant_length is None or constant_length <= 0:
        raise ValueError(
            f"seq_mean_token_sum_norm needs constant_length > 0 (max_new_tokens), got "
            f"{constant_length}"
        )
    return row_sums.sum() / (sequences * constant_length)
