"""Supervised-contrastive InfoNCE on pooled response embeddings (Khosla et al. 2020, SupCon).

With ``z_i = e_i / ||e_i||``, ``s_ij = z_i . z_j / temperature`` and ``H = {i : score_i >=
high_threshold}``:

- positives of i:  ``P(i) = H \\ {i}``; negatives: every j with ``score_j < high_threshold``
- anchors:         ``A = {i in H : |P(i)| >= 1}`` (so at least two high-score samples)
- per anchor:      ``loss_i = -1/|P(i)| sum_{p in P(i)} log( exp(s_ip) / sum_{a != i} exp(s_ia) )``
                   (the denominator runs over all other samples, positives and negatives)
- loss:            ``mean_{i in A} loss_i``; with no anchor, a zero that still backpropagates
                   (all-zero gradients).

``masked_mean_pool`` turns hidden states into one embedding per response:
``e_b = sum_t m_bt h_bt / max(sum_t m_bt, 1)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``hidden`` over valid tokens. hidden: [B, T, D]; mask: [B, T] -> [B, D] (0 if empty)."""
    if hidden.shape[:2] != mask.shape:
        raise ValueError(f"mask {tuple(mask.shape)} does not match hidden {tuple(hidden.shape)}")
    valid = mask.bool().unsqueeze(-1)
    summed = torch.where(valid, hidden, torch.zeros_like(hidden)).sum(dim=1)
    return summed / valid.sum(dim=1).clamp(min=1).to(hidden.dtype)


def info_nce_loss(
    embeddings: torch.Tensor, scores: torch.Tensor, temperature: float, high_threshold: float
) -> torch.Tensor:
    """SupCon InfoNCE pulling high-score responses together, see the module docstring.

    embeddings: [N, D]; scores: [N] -> scalar loss.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if embeddings.dim() != 2 or scores.shape != embeddings.shape[:1]:
        raise ValueError(
            f"expected embeddings [N, D] and scores [N], got "
            f"{tuple(embeddings.shape)} and {tuple(scores.shape)}"
        )
    n = embeddings.shape[0]
    high = scores >= high_threshold
    not_self = ~torch.eye(n, dtype=torch.bool, device=embeddings.device)
    positives = high.unsqueeze(0) & high.unsqueeze(1) & not_self
    positive_count = positives.sum(dim=1)
    anchors = high & (positive_count > 0)
    if not bool(anchors.any()):
        return embeddings.sum() * 0.0
    z = F.normalize(embeddings, dim=-1)
    similarity = (z @ z.T / temperature).masked_fill(~not_self, float("-inf"))
    log_prob = similarity - torch.logsumexp(similarity, dim=1, keepdim=True)
    positive_log_prob = torch.where(positives, log_prob, torch.zeros_like(log_prob)).sum(dim=1)
    per_anchor = -positive_log_prob[anchors] / positive_count[anchors].to(embeddings.dtype)
    return per_anchor.mean()
