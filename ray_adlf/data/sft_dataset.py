"""Records -> SFT examples; the train/eval split; the order of each epoch; collation.

Examples. Every record gives a *conversation example*; with ``self_critique`` a record that has a
``score_reason`` also gives a *critique example*:

- conversation example: the conversation, with the score prefix ``Target score: X/5`` as the
  first line of its system turn when ``decision_transformer`` is on (``conditioning.py``).
  ``labels`` carry the assistant turns (the formats' assistant-only rule); ``critique_labels``
  are all -100.
- critique example: the *unconditioned* conversation, then the critique request and the critique
  ``Score: X/5\\nReason: ...`` (``critique.py``). Only the critique's tokens carry
  ``critique_labels``; ``labels`` are all -100, so the conversation is context here and is
  learned once, in its conversation example. The critic never sees a score in its context, so it
  cannot copy one. Records without a reason give no critique example and no critique loss.

Label lists are ``[T]`` with -100 where a token is not trained on. An example whose trained
tokens all fall past ``max_seq_length`` is dropped; truncations and drops are counted in
``BuildStats``.

Split: the records are shuffled by ``random.Random(seed)``; the first
``round(eval_fraction * N)`` (at least 1 when ``eval_fraction > 0`` and N >= 2) are held out.

Epoch order (``EpochOrder``): without a curriculum, a permutation drawn from
``random.Random(f"{seed}:{epoch}")``. With a curriculum, epoch 0 is ``curriculum_order`` over
the examples' difficulties (record score and token length, ``curriculum.py``), its batches being
the examples of one optimizer step (per-worker batch x workers x accumulation): step s draws
from the easiest ``c(s)`` share. Competence reaches 1 at the end of epoch 0; later epochs are
shuffled as without a curriculum. The order depends only on (seed, epoch), which is what makes
a resumed run see the same data as an uninterrupted one.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from ray_adlf.data.conditioning import condition_on_score
from ray_adlf.data.critique import critique_conversation
from ray_adlf.data.curriculum import curriculum_order
from ray_adlf.data.formats import IGNORE_INDEX, render_conversation
from ray_adlf.data.records import Record, Turn


@dataclass(frozen=True)
class SFTExample:
    """One training sequence: ``input_ids``, ``labels``, ``critique_labels`` are ``[T]`` lists."""

    input_ids: list[int]
    labels: list[int]
    critique_labels: list[int]
    score: float
    kind: Literal["conversation", "critique"]


@dataclass(frozen=True)
class BuildStats:
    """How many examples were built, cut at ``max_seq_length``, and dropped (nothing trained)."""

    built: int
    truncated: int
    dropped: int


def _token_spans(
    turns: Sequence[Turn], tokenizer, token_format: str, max_seq_length: int
) -> tuple[list[int], list[int], int, bool]:
    """Token ids, each token's assistant-span index (-1 outside), span count, truncated."""
    text, spans = render_conversation(list(turns), tokenizer, token_format)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    span_of = [
        next(
            (k for k, (lo, hi) in enumerate(spans) if lo <= start and end <= hi and end > start), -1
        )
        for start, end in encoded["offset_mapping"]
    ]
    ids = encoded["input_ids"]
    return ids[:max_seq_length], span_of[:max_seq_length], len(spans), len(ids) > max_seq_length


def conversation_example(
    record: Record, tokenizer, token_format: str, max_seq_length: int, decision_transformer: bool
) -> tuple[SFTExample, bool]:
    """The record's conversation example and whether it was truncated."""
    turns = record.conversation
    if decision_transformer:
        turns = condition_on_score(turns, record.score)
    ids, span_of, _, truncated = _token_spans(turns, tokenizer, token_format, max_seq_length)
    labels = [tok if span >= 0 else IGNORE_INDEX for tok, span in zip(ids, span_of)]
    example = SFTExample(ids, labels, [IGNORE_INDEX] * len(ids), record.score, "conversation")
    return example, truncated


def critique_example(
    record: Record, tokenizer, token_format: str, max_seq_length: int
) -> tuple[SFTExample, bool]:
    """The record's critique example (record needs a ``score_reason``) and whether truncated."""
    if record.score_reason is None:
        raise ValueError(f"{record.source}:{record.line}: no score_reason to critique with")
    turns = critique_conversation(record.conversation, record.score, record.score_reason)
    ids, span_of, n_spans, truncated = _token_spans(turns, tokenizer, token_format, max_seq_length)
    critique_labels = [
        tok if span == n_spans - 1 else IGNORE_INDEX for tok, span in zip(ids, span_of)
    ]
    example = SFTExample(ids, [IGNORE_INDEX] * len(ids), critique_labels, record.score, "critique")
    return example, truncated


def build_examples(
    records: Sequence[Record],
    tokenizer,
    token_format: str,
    max_seq_length: int,
    decision_transformer: bool,
    self_critique: bool,
) -> tuple[list[SFTExample], BuildStats]:
    """Conversation examples (record order), then critique examples; see the module docstring."""
    candidates = [
        conversation_example(r, tokenizer, token_format, max_seq_length, decision_transformer)
        for r in records
    ]
    if self_critique:
        candidates += [
            critique_example(r, tokenizer, token_format, max_seq_length)
            for r in records
            if r.score_reason is not None
        ]
    kept = [
        example
        for example, _ in candidates
        if any(label != IGNORE_INDEX for label in example.labels + example.critique_labels)
    ]
    truncated = sum(was_cut for _, was_cut in candidates)
    return kept, BuildStats(len(kept), truncated, len(candidates) - len(kept))


@dataclass(frozen=True)
class EpochOrder:
    """The data order of every epoch: ``for_epoch(e)`` is a permutation of ``range(n)``.

    ``difficulties`` (one per example) turns the curriculum on; ``examples_per_step`` is the
    number of examples in one optimizer step, the curriculum's batch.
    """

    n: int
    seed: int
    difficulties: tuple[float, ...] | None = None
    examples_per_step: int = 1
    start_fraction: float = 1.0
    pacing: str = "linear"

    def for_epoch(self, epoch: int) -> list[int]:
        if self.difficulties is not None and epoch == 0:
            return curriculum_order(
                self.difficulties,
                self.examples_per_step,
                self.start_fraction,
                self.pacing,
                self.seed,
            )
        order = list(range(self.n))
        random.Random(f"{self.seed}:{epoch}").shuffle(order)
        return order


class EpochOrderSampler(torch.utils.data.Sampler[int]):
    """Yields ``order.for_epoch(epoch)`` for the epoch set by ``set_epoch`` (the Trainer's call)."""

    def __init__(self, order: EpochOrder):
        self.order = order
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.order.n

    def __iter__(self):
        return iter(self.order.for_epoch(self.epoch))


class SFTDataset(torch.utils.data.Dataset):
    """A list of ``SFTExample``; items are the examples themselves (see ``collate_examples``)."""

    def __init__(self, examples: Sequence[SFTExample]):
        self.examples = list(examples)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> SFTExample:
        return self.examples[index]


def collate_examples(examples: Sequence[SFTExample], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad to the longest example.

    Returns ``input_ids``, ``attention_mask``, ``labels``, ``critique_labels``: ``[B, T]``;
    ``scores``: ``[B]`` float; ``is_conversation``: ``[B]`` bool.
    """
    width = max(len(e.input_ids) for e in examples)

    def pad(rows: list[list[int]], value: int) -> torch.Tensor:
        return torch.tensor([row + [value] * (width - len(row)) for row in rows], dtype=torch.long)

    return {
        "input_ids": pad([e.input_ids for e in examples], pad_token_id),
        "attention_mask": pad([[1] * len(e.input_ids) for e in examples], 0),
        "labels": pad([e.labels for e in examples], IGNORE_INDEX),
        "critique_labels": pad([e.critique_labels for e in examples], IGNORE_INDEX),
        "scores": torch.tensor([e.score for e in examples], dtype=torch.float32),
        "is_conversation": torch.tensor([e.kind == "conversation" for e in examples]),
    }
