"""The reward model's inputs, predictions and metrics (plain functions; training is in train/).

The reward model is ``AutoModelForSequenceClassification`` with ``num_labels=1`` (a scalar head
on a causal LM, read at the last non-pad token), trained by regression on ``score / 5``. Its
input is the conversation rendered in the run's token format up to and including the response,
cut from the left to ``max_length`` tokens so the response is always kept.

``external = clip(prediction, 0, 1)``: the predicted human score mapped to [0, 1].

Metrics over held-out predictions ``p`` and targets ``t`` (both [N], same scale):

- ``mae = mean |p - t|``
- ``pearson = cov(p, t) / (std p * std t)`` (0 when either is constant)
- ``spearman`` = Pearson of the average ranks of ``p`` and ``t``
- ``pairwise_accuracy`` = share of pairs ``i < j`` with ``t_i != t_j`` where ``p`` orders them
  the same way as ``t`` (a tie in ``p`` counts 1/2); 0.5 means chance.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ray_adlf.data.formats import render_conversation
from ray_adlf.data.records import Turn
from ray_adlf.rewards.combine import average_ranks

SCORE_SCALE = 5.0


def reward_model_ids(
    context: Sequence[Turn], response: str, tokenizer, token_format: str, max_length: int
) -> list[int]:
    """Token ids of ``context + [assistant: response]``, keeping the last ``max_length``."""
    turns = [*context, Turn("assistant", response)]
    text, _ = render_conversation(turns, tokenizer, token_format)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return ids[-max_length:]


def pad_batch(
    rows: Sequence[Sequence[int]], pad_token_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad id lists -> (input_ids [B, T], attention_mask [B, T])."""
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(list(row), dtype=torch.long)
        mask[i, : len(row)] = 1
    return ids, mask


@torch.no_grad()
def predict(
    model, rows: Sequence[Sequence[int]], pad_token_id: int, batch_size: int = 32
) -> np.ndarray:
    """The model's scalar output for each id list (the ``score / 5`` scale). -> [N]."""
    model.eval()
    out = []
    for start in range(0, len(rows), batch_size):
        ids, mask = pad_batch(rows[start : start + batch_size], pad_token_id)
        out.append(model(input_ids=ids, attention_mask=mask).logits[:, 0].float().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def load_reward_model(path: str):
    """``(model, tokenizer)`` from a saved reward-model directory (eval mode)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32).eval()
    return model, tokenizer


def mae(pred: np.ndarray, target: np.ndarray) -> float:
    """``mean |pred - target|``."""
    return float(np.mean(np.abs(np.asarray(pred, float) - np.asarray(target, float))))


def pearson(pred: np.ndarray, target: np.ndarray) -> float:
    """``cov(p, t) / (std p * std t)``; 0 when either is constant."""
    p = np.asarray(pred, float) - np.mean(pred)
    t = np.asarray(target, float) - np.mean(target)
    denominator = np.sqrt((p * p).sum() * (t * t).sum())
    return float((p * t).sum() / denominator) if denominator > 0 else 0.0


def spearman(pred: np.ndarray, target: np.ndarray) -> float:
    """Pearson correlation of the average ranks."""
    return pearson(average_ranks(pred), average_ranks(target))


def pairwise_accuracy(pred: np.ndarray, target: np.ndarray) -> float:
    """Share of pairs with different targets that ``pred`` orders correctly (ties: 1/2)."""
    p, t = np.asarray(pred, float), np.asarray(target, float)
    dt = np.sign(t[:, None] - t[None, :])
    dp = np.sign(p[:, None] - p[None, :])
    upper = np.triu(np.ones_like(dt, dtype=bool), k=1) & (dt != 0)
    if not upper.any():
        return 0.5
    credit = np.where(dp == dt, 1.0, np.where(dp == 0, 0.5, 0.0))
    return float(credit[upper].mean())


def regression_metrics(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """``{"mae", "pearson", "spearman", "pairwise_accuracy"}`` of predictions vs targets."""
    return {
        "mae": mae(pred, target),
        "pearson": pearson(pred, target),
        "spearman": spearman(pred, target),
        "pairwise_accuracy": pairwise_accuracy(pred, target),
    }
