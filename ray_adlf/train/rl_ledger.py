"""The RL round's rows for the ledger (``ray_adlf.ledger``): what the producer scored plus what
each rank's learner computed on its shard.

A recorded round's ``ProducedRound.samples`` holds the columns known when the round was scored
(texts, reward parts, critics). After the update every rank has ``sample_statistics`` of its
shard's rows; ``gather_to_rank0`` brings them to rank 0 (every rank calls it), and
``round_columns`` puts each rank's rows back in the rollout's order (``Rollout.shard_rows``)
beside the round, the policy version and the row's place in the round.
"""

from __future__ import annotations

from typing import Any

from ray_adlf.ledger.schema import LEARNER_COLUMNS
from ray_adlf.train.rollout_producer import ProducedRound


def gather_to_rank0(samples: dict[str, list], rank: int, world: int) -> list[dict[str, list]]:
    """Every rank's ``samples`` on rank 0, by rank (``[]`` on the others)."""
    if world == 1:
        return [samples]
    import torch.distributed as dist

    gathered: list[Any] = [None] * world if rank == 0 else None
    dist.gather_object(samples, gathered, dst=0)
    return gathered if rank == 0 else []


def round_columns(produced: ProducedRound, by_rank: list[dict[str, list]]) -> dict[str, list]:
    """The ledger columns of a recorded round: ``produced.samples`` with ``round``,
    ``policy_version``, ``sample``, ``group`` and the learner's columns of ``by_rank``
    (rank r's rows are the rollout's ``shard_rows(r, world)``)."""
    rollout, world = produced.rollout, len(by_rank)
    n = len(rollout)
    columns = dict(produced.samples)
    columns["round"] = [produced.round_index] * n
    columns["policy_version"] = list(rollout.policy_versions)
    columns["sample"] = list(range(n))
    columns["group"] = [i // rollout.group_size for i in range(n)]
    for name in LEARNER_COLUMNS:
        values: list = [None] * n
        for rank, samples in enumerate(by_rank):
            for row, value in zip(rollout.shard_rows(rank, world), samples[name]):
                values[row] = value
        columns[name] = values
    return columns
