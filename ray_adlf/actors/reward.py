"""Reward scoring as Ray actors, and the one call the RL round makes for its rewards.

``RewardActor`` is a thin shell over ``rewards.scorer.RewardScorer`` (reward model, reference
model, sentence embedder, plugins) in its own process with ``--reward_num_cpus`` CPUs.
``RewardPool`` owns ``--num_reward_workers`` of them and splits a batch into contiguous shards.
An actor that dies is restarted by Ray (``max_restarts``) and the shard it was scoring is
scored again on the new process (``max_task_retries``): scores are a function of the shard, so
none is lost or counted twice.

``compute_adlf_rewards`` is the interface of the RL round driver: reward parts from the pool,
the debate score from a ``CritiquePool`` (when ``--use_debate_reward``), then the ADLF combiner
(on the driver, which owns the normalisation statistics that go into checkpoints).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import ray

from ray_adlf.actors.critique import CritiquePool, wait_until_ready
from ray_adlf.config import Config, RewardConfig
from ray_adlf.cpu_plan import phase_threads, thread_env
from ray_adlf.data.records import Turn
from ray_adlf.debate.protocol import debate_parts
from ray_adlf.rewards.combine import RewardBatch, RewardCombiner
from ray_adlf.rewards.scorer import RewardScorer


@ray.remote
class RewardActor:
    """One ``RewardScorer`` in one Ray actor process."""

    def __init__(
        self,
        rewards: RewardConfig,
        reference_model: str,
        reward_model: str | None,
        token_format: str,
        max_length: int,
    ) -> None:
        self.scorer = RewardScorer(rewards, reference_model, reward_model, token_format, max_length)

    def ready(self) -> bool:
        return True

    def score(
        self,
        contexts: list[tuple[Turn, ...]],
        responses: list[str],
        response_ids: list[list[int]] | None,
    ) -> dict[str, np.ndarray]:
        return self.scorer.score(contexts, responses, response_ids)


class RewardPool:
    """``--num_reward_workers`` RewardActors behind one ``score``."""

    def __init__(
        self,
        rewards: RewardConfig,
        reference_model: str,
        reward_model: str | None,
        token_format: str,
        max_length: int,
        num_workers: int,
        num_cpus: float,
        startup_timeout_s: float = 600.0,
        max_restarts: int = 2,
        num_threads: int = 0,
    ) -> None:
        options = RewardActor.options(
            num_cpus=num_cpus,
            max_restarts=max_restarts,
            max_task_retries=max_restarts,
            runtime_env=thread_env(num_threads or num_cpus),
        )
        self.actors = [
            options.remote(rewards, reference_model, reward_model, token_format, max_length)
            for _ in range(num_workers)
        ]
        wait_until_ready(self.actors, "RewardActor", num_cpus, startup_timeout_s)

    @classmethod
    def from_config(cls, cfg: Config, reference_model: str, reward_model: str | None) -> RewardPool:
        return cls(
            cfg.rewards,
            reference_model,
            reward_model,
            cfg.data.token_format,
            cfg.data.max_seq_length,
            cfg.resources.num_reward_workers,
            cfg.resources.reward_num_cpus,
            max_restarts=cfg.resources.actor_max_restarts,
            num_threads=phase_threads(cfg)["reward"],
        )

    def submit(
        self,
        contexts: Sequence[Sequence[Turn]],
        responses: Sequence[str],
        response_ids: Sequence[Sequence[int]] | None = None,
    ) -> list[ray.ObjectRef]:
        """Start scoring: one contiguous shard per actor (``gather`` collects them)."""
        bounds = np.linspace(0, len(responses), len(self.actors) + 1).round().astype(int)
        return [
            actor.score.remote(
                [tuple(c) for c in contexts[lo:hi]],
                list(responses[lo:hi]),
                None if response_ids is None else [list(ids) for ids in response_ids[lo:hi]],
            )
            for actor, lo, hi in zip(self.actors, bounds[:-1], bounds[1:])
            if hi > lo
        ]

    @staticmethod
    def gather(refs: list[ray.ObjectRef]) -> dict[str, np.ndarray]:
        """The submitted shards' parts, concatenated in order."""
        shards = ray.get(refs)
        if not shards:
            return {}
        return {name: np.concatenate([s[name] for s in shards]) for name in shards[0]}

    def score(
        self,
        contexts: Sequence[Sequence[Turn]],
        responses: Sequence[str],
        response_ids: Sequence[Sequence[int]] | None = None,
    ) -> dict[str, np.ndarray]:
        """Reward parts ``{name: [N]}``, sharded over the actors and gathered in order."""
        return self.gather(self.submit(contexts, responses, response_ids))

    def shutdown(self) -> None:
        for actor in self.actors:
            ray.kill(actor)
        self.actors = []


def compute_adlf_rewards(
    contexts: Sequence[Sequence[Turn]],
    responses: Sequence[str],
    response_ids: Sequence[Sequence[int]] | None,
    reward_pool: RewardPool,
    combiner: RewardCombiner,
    critique_pool: CritiquePool | None = None,
) -> RewardBatch:
    """ADLF rewards of N samples: parts from ``reward_pool`` (and the debate from
    ``critique_pool``, when given), combined by ``combiner`` (which updates its statistics). The reward actors and the
    debate run at the same time."""
    refs = reward_pool.submit(contexts, responses, response_ids)
    started = time.perf_counter()
    debate = critique_pool.debate(contexts, responses) if critique_pool is not None else None
    debate_s = time.perf_counter() - started
    parts = reward_pool.gather(refs)
    if debate is not None:
        parts.update(debate_parts(debate))
    batch = combiner.combine(parts)
    batch.debate = debate
    if debate is not None:
        batch.timings["debate_s"] = debate_s
    return batch
