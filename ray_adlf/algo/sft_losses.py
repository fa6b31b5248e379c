"""Token losses and response embeddings of the SFT stage.

With logits ``z [B, T, V]`` and a label tensor ``y [B, T]`` (-100 = not trained), token t is
predicted from position t - 1:

    nll_bt  = -log softmax(z_{b, t-1})[y_bt]        for t >= 1 and y_bt != -100
    mean(y) = sum_bt nll_bt / max(#{trained tokens}, 1)     (0 when none is trained)

``sft_token_losses`` returns ``(mean(labels), mean(critique_labels))``: the language-model loss
over assistant tokens and the critique loss over critique tokens, each a mean over its own tokens.
The two label tensors never train the same token, so one log-softmax serves both.

``response_embeddings`` pools the hidden states of the tokens each response is trained on:
``e_b = sum_t m_bt h_bt / max(sum_t m_bt, 1)`` with ``m = labels != -100``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ray_adlf.algo.contrastive import masked_mean_pool
from ray_adlf.algo.masked import masked_mean

IGNORE_INDEX = -100


def sft_token_losses(
    logits: torch.Tensor, labels: torch.Tensor, critique_labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(lm_loss, critique_loss)`` scalars. logits: [B, T, V]; labels, critique_labels: [B, T]."""
    if labels.shape != logits.shape[:2] or critique_labels.shape != labels.shape:
        raise ValueError(
            f"labels {tuple(labels.shape)} / critique_labels {tuple(critique_labels.shape)} "
            f"do not match logits {tuple(logits.shape)}"
        )
    lm_mask = labels[:, 1:] != IGNORE_INDEX
    critique_mask = critique_labels[:, 1:] != IGNORE_INDEX
    if bool((lm_mask & critique_mask).any()):
        raise ValueError("a token carries both a language-model and a critique label")
    targets = torch.where(lm_mask, labels[:, 1:], critique_labels[:, 1:])
    nll = F.cross_entropy(
        logits[:, :-1].float().transpose(1, 2),
        targets,
        ignore_index=IGNORE_INDEX,
        reduction="none",
    )
    return masked_mean(nll, lm_mask), masked_mean(nll, critique_mask)


def response_embeddings(hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean hidden state over each row's trained tokens. hidden: [B, T, D]; labels: [B, T] -> [B, D]."""
    return masked_mean_pool(hidden, labels != IGNORE_INDEX)
