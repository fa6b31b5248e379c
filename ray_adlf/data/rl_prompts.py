"""Prompts for the RL stage and the position in their stream (part of every RL checkpoint).

A record becomes one RL prompt: its turns before the last assistant turn (the context), rendered
with ``generation_prompt`` (score-conditioned on ``--target_score`` in decision-transformer
mode) and tokenized; prompts longer than ``max_prompt_tokens`` keep their last tokens (the cue
for the assistant's turn is at the end).

``PromptStream`` hands out ``batch_size`` prompt indices per round, walking the epoch order of
``EpochOrder`` (curriculum order in the first epoch when on, a seeded shuffle otherwise) and
crossing into the next epoch when one runs out. Its state is ``(epoch, offset)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ray_adlf.data.curriculum import difficulty_scores
from ray_adlf.data.prompts import generation_prompt
from ray_adlf.data.records import Record, Turn, split_last_assistant
from ray_adlf.data.sft_dataset import EpochOrder


@dataclass(frozen=True)
class RLPrompt:
    """One prompt: the context turns, its token ids, the human score of its record, and where
    the record was read (``Record.record_id``)."""

    context: tuple[Turn, ...]
    prompt_ids: list[int]
    score: float
    record_id: str


def build_rl_prompts(
    records: Sequence[Record],
    tokenizer,
    token_format: str,
    target_score: float | None,
    max_prompt_tokens: int,
) -> list[RLPrompt]:
    """One RLPrompt per record (see the module docstring)."""
    prompts = []
    for record in records:
        context, _ = split_last_assistant(record)
        text = generation_prompt(context, tokenizer, token_format, target_score)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"][-max_prompt_tokens:]
        prompts.append(RLPrompt(tuple(context), ids, record.score, record.record_id))
    return prompts


def prompt_order(
    prompts: Sequence[RLPrompt],
    batch_size: int,
    seed: int,
    use_curriculum: bool,
    start_fraction: float,
    pacing: str,
    score_weight: float,
) -> EpochOrder:
    """The epoch order of the prompts; curriculum difficulty from score and prompt length."""
    difficulties = None
    if use_curriculum:
        difficulties = tuple(
            difficulty_scores(
                [p.score for p in prompts], [len(p.prompt_ids) for p in prompts], score_weight
            )
        )
    return EpochOrder(len(prompts), seed, difficulties, batch_size, start_fraction, pacing)


class PromptStream:
    """``next_batch()`` -> the next ``batch_size`` prompt indices; state ``(epoch, offset)``."""

    def __init__(self, order: EpochOrder, batch_size: int):
        self.order = order
        self.batch_size = batch_size
        self.epoch = 0
        self.offset = 0
        self._current = order.for_epoch(0)

    def next_batch(self) -> list[int]:
        batch: list[int] = []
        while len(batch) < self.batch_size:
            if self.offset == len(self._current):
                self.epoch, self.offset = self.epoch + 1, 0
                self._current = self.order.for_epoch(self.epoch)
            take = min(self.batch_size - len(batch), len(self._current) - self.offset)
            batch += self._current[self.offset : self.offset + take]
            self.offset += take
        return batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "offset": self.offset}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.offset = state["epoch"], state["offset"]
        self._current = self.order.for_epoch(self.epoch)
