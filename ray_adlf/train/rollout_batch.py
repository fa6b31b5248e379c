"""One round's samples as one typed batch, from the engines through the rewards to the learner.

A ``Rollout`` holds B = prompts x ``group_size`` rows; the samples of one prompt are adjacent
(rows ``g * group_size .. (g + 1) * group_size - 1`` belong to prompt group g). Per row:

- ``prompt_ids`` / ``response_ids``: token ids (ragged lists; response ends at EOS or the cap);
- ``engine_logprobs``: the engine's ``log pi_old(y_t)`` of each response token at the sampling
  temperature (one float per response token);
- ``finish_reasons``: ``"stop"`` or ``"length"``;
- ``scores``: the ADLF reward, ``[B]`` float32;
- ``ref_logprobs``: the reference's logprobs per response token when a reference actor computed
  them, else None (a colocated reference runs on the learner's shard).

``shard(rank, world)`` keeps whole prompt groups ``g % world == rank``, so group baselines
(GRPO, RLOO) never span ranks; ``tensors(pad_id, device)`` pads it for the learner.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ray_adlf.models.policy import pack_sequences


def padded(rows: list[list[float]], width: int) -> torch.Tensor:
    """Ragged float rows right-padded with 0 to ``[B, width]``."""
    return torch.tensor([row + [0.0] * (width - len(row)) for row in rows], dtype=torch.float32)


@dataclass
class Rollout:
    """The batch of one round (module docstring)."""

    prompt_ids: list[list[int]]
    response_ids: list[list[int]]
    engine_logprobs: list[list[float]]
    finish_reasons: list[str]
    scores: torch.Tensor
    group_size: int
    ref_logprobs: list[list[float]] | None = None

    def __post_init__(self) -> None:
        columns = (self.prompt_ids, self.response_ids, self.engine_logprobs, self.finish_reasons)
        sizes = {len(column) for column in columns} | {self.scores.shape[0]}
        if len(sizes) > 1 or len(self) % self.group_size:
            raise ValueError(
                f"a Rollout needs equal columns in whole groups of {self.group_size}: {sizes}"
            )

    def __len__(self) -> int:
        return len(self.response_ids)

    def rows(self, index: list[int]) -> Rollout:
        """The rollout of rows ``index`` (whole groups, in order)."""
        return Rollout(
            [self.prompt_ids[i] for i in index],
            [self.response_ids[i] for i in index],
            [self.engine_logprobs[i] for i in index],
            [self.finish_reasons[i] for i in index],
            self.scores[index],
            self.group_size,
            None if self.ref_logprobs is None else [self.ref_logprobs[i] for i in index],
        )

    def shard(self, rank: int, world: int) -> Rollout:
        """Rows of prompt groups ``g`` with ``g % world == rank``."""
        groups = range(rank, len(self) // self.group_size, world)
        size = self.group_size
        return self.rows([g * size + k for g in groups for k in range(size)])

    def tensors(self, pad_id: int, device: torch.device | str) -> dict[str, torch.Tensor]:
        """``models.policy.pack_sequences`` of the rows plus ``engine_logprobs`` [B, T],
        ``scores`` [B] and, with a reference actor, ``ref_logprobs`` [B, T], on ``device``."""
        batch = pack_sequences(self.prompt_ids, self.response_ids, pad_id)
        width = batch["response_ids"].shape[1]
        batch["engine_logprobs"] = padded(self.engine_logprobs, width)
        batch["scores"] = self.scores.float()
        if self.ref_logprobs is not None:
            batch["ref_logprobs"] = padded(self.ref_logprobs, width)
        return {key: value.to(device) for key, value in batch.items()}
