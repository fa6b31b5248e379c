"""One round's samples as one typed batch, from the engines through the rewards to the learner.

A ``Rollout`` holds B = prompts x ``group_size`` rows; the samples of one prompt are adjacent
(rows ``g * group_size .. (g + 1) * group_size - 1`` belong to prompt group g). Per row:

- ``prompt_ids`` / ``response_ids``: token ids (ragged lists; response ends at EOS or the cap);
- ``engine_logprobs``: the engine's ``log pi_old(y_t)`` of each response token at the sampling
  temperature (one float per response token);
- ``finish_reasons``: ``"stop"`` or ``"length"``;
- ``scores``: the ADLF reward, ``[B]`` float32;
- ``policy_versions``: the version of the policy weights that sampled the row (the number of
  learner rounds in them: 0 = the starting weights);
- ``ref_logprobs``: the reference's logprobs per response token when the round ran its
  reference pass, else None.

``shard(rank, world)`` keeps whole prompt groups ``g % world == rank`` (``shard_rows``), so
group baselines (GRPO, RLOO) never span ranks; ``tensors(pad_id, device)`` pads it for the learner;
``concat`` joins rollouts of one group size; ``to_data`` / ``from_data`` turn it into plain
lists and back, for a checkpoint of the rollouts still in flight.
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
    policy_versions: list[int]
    ref_logprobs: list[list[float]] | None = None

    def __post_init__(self) -> None:
        columns = (
            self.prompt_ids,
            self.response_ids,
            self.engine_logprobs,
            self.finish_reasons,
            self.policy_versions,
        )
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
            [self.policy_versions[i] for i in index],
            None if self.ref_logprobs is None else [self.ref_logprobs[i] for i in index],
        )

    @classmethod
    def concat(cls, parts: list[Rollout]) -> Rollout:
        """The rows of ``parts`` in order (one group size; all with reference rows or none)."""
        if len({part.group_size for part in parts}) != 1:
            raise ValueError("rollouts of different group sizes cannot be joined")
        has_ref = {part.ref_logprobs is not None for part in parts}
        if len(has_ref) != 1:
            raise ValueError("rollouts with and without reference logprobs cannot be joined")
        join = lambda name: [row for part in parts for row in getattr(part, name)]  # noqa: E731
        return cls(
            join("prompt_ids"),
            join("response_ids"),
            join("engine_logprobs"),
            join("finish_reasons"),
            torch.cat([part.scores for part in parts]),
            parts[0].group_size,
            join("policy_versions"),
            join("ref_logprobs") if has_ref == {True} else None,
        )

    def to_data(self) -> dict:
        """Plain lists and numbers (JSON-ready); ``from_data`` restores the rollout."""
        return {
            "prompt_ids": self.prompt_ids,
            "response_ids": self.response_ids,
            "engine_logprobs": self.engine_logprobs,
            "finish_reasons": self.finish_reasons,
            "scores": self.scores.tolist(),
            "group_size": self.group_size,
            "policy_versions": self.policy_versions,
            "ref_logprobs": self.ref_logprobs,
        }

    @classmethod
    def from_data(cls, data: dict) -> Rollout:
        """The rollout ``to_data`` gave (scores back to float32, as they were)."""
        return cls(**{**data, "scores": torch.tensor(data["scores"], dtype=torch.float32)})

    def shard_rows(self, rank: int, world: int) -> list[int]:
        """The rows of prompt groups ``g`` with ``g % world == rank``, in order."""
        groups = range(rank, len(self) // self.group_size, world)
        size = self.group_size
        return [g * size + k for g in groups for k in range(size)]

    def shard(self, rank: int, world: int) -> Rollout:
        """The rollout of ``shard_rows(rank, world)``."""
        return self.rows(self.shard_rows(rank, world))

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
