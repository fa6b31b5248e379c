"""Reward scoring as Ray actors, and the one call the RL round makes for its rewards.

``RewardActor`` is a thin shell over ``rewards.scorer.RewardScorer`` (reward model, sentence
embedder, plugins) in its own process with ``--reward_num_cpus`` CPUs. ``RewardPool`` owns
``--num_reward_workers`` of them (an ``ActorGroup``) and splits a batch into contiguous shards.
An actor that dies is restarted by Ray (``max_restarts``) and the shard it was scoring is
scored again on the new process (``max_task_retries``): scores are a function of the shard, so
none is lost or counted twice.

``compute_adlf_rewards`` is the interface of the RL round driver and of ``ray-adlf score``:
the model signals from the pool, the pure signals (``rewards.catalog``: length, fluency from
the caller's reference logprobs, faithfulness) on the caller, the debate score from a
``CritiquePool`` (when ``--use_debate_reward``) while the reward actors score, then the ADLF
combiner (on the caller, which owns the normalisation statistics that go into checkpoints).
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence

import numpy as np
import ray

from ray_adlf.actors.critique import CritiquePool
from ray_adlf.actors.group import ActorGroup
from ray_adlf.config import Config, RewardConfig
from ray_adlf.cpu_plan import phase_threads
from ray_adlf.data.records import Turn
from ray_adlf.debate.protocol import debate_parts
from ray_adlf.rewards.catalog import SignalInputs, pure_parts
from ray_adlf.rewards.combine import RewardBatch, RewardCombiner
from ray_adlf.rewards.scorer import RewardScorer


@ray.remote
class RewardActor:
    """One ``RewardScorer`` in one Ray actor process."""

    def __init__(self, *scorer_args) -> None:
        self.scorer = RewardScorer(*scorer_args)

    def ready(self) -> bool:
        return True

    def score(
        self,
        contexts: list[tuple[Turn, ...]],
        responses: list[str],
        prompt_ids: list[list[int]] | None,
        response_ids: list[list[int]] | None,
    ) -> dict[str, np.ndarray]:
        return self.scorer.score(contexts, responses, prompt_ids, response_ids)


class RewardPool:
    """``num_workers`` RewardActors behind one ``score`` (``RewardScorer``'s arguments)."""

    def __init__(
        self,
        rewards: RewardConfig,
        policy_model: str,
        reward_model: str | None,
        token_format: str,
        max_length: int,
        num_workers: int,
        num_cpus: float,
        max_restarts: int = 2,
        num_threads: int = 0,
        signals: Collection[str] | None = None,
    ) -> None:
        args = (rewards, policy_model, reward_model, token_format, max_length, signals)
        self.group = ActorGroup(
            RewardActor,
            [args] * num_workers,
            num_cpus=num_cpus,
            max_restarts=max_restarts,
            max_task_retries=max_restarts,
            num_threads=num_threads,
        )

    @classmethod
    def from_config(
        cls,
        cfg: Config,
        policy_model: str,
        reward_model: str | None,
        num_workers: int = 0,
        signals: Collection[str] | None = None,
        phase: str = "reward",
    ) -> RewardPool:
        """``--num_reward_workers`` (or ``num_workers``) actors with ``--reward_num_cpus`` each
        and the threads of ``phase`` (``cpu_plan.phase_threads``)."""
        res = cfg.resources
        return cls(
            cfg.rewards,
            policy_model,
            reward_model,
            cfg.data.token_format,
            cfg.data.max_seq_length,
            num_workers or res.num_reward_workers,
            res.reward_num_cpus,
            max_restarts=res.actor_max_restarts,
            num_threads=phase_threads(cfg)[phase],
            signals=signals,
        )

    def submit(
        self,
        contexts: Sequence[Sequence[Turn]],
        responses: Sequence[str],
        prompt_ids: Sequence[Sequence[int]] | None = None,
        response_ids: Sequence[Sequence[int]] | None = None,
    ) -> list[ray.ObjectRef]:
        """Start scoring: one contiguous shard per actor (``gather`` collects them)."""

        def rows(ids, lo, hi):
            return None if ids is None else [list(row) for row in ids[lo:hi]]

        return [
            actor.score.remote(
                [tuple(c) for c in contexts[lo:hi]],
                list(responses[lo:hi]),
                rows(prompt_ids, lo, hi),
                rows(response_ids, lo, hi),
            )
            for actor, (lo, hi) in zip(self.group.actors, self.group.split(len(responses)))
            if hi > lo
        ]

    def gather(self, refs: list[ray.ObjectRef]) -> dict[str, np.ndarray]:
        """The submitted shards' parts, concatenated in order."""
        shards = self.group.gather(refs)
        if not shards:
            return {}
        return {name: np.concatenate([s[name] for s in shards]) for name in shards[0]}

    def score(
        self,
        contexts: Sequence[Sequence[Turn]],
        responses: Sequence[str],
        prompt_ids: Sequence[Sequence[int]] | None = None,
        response_ids: Sequence[Sequence[int]] | None = None,
    ) -> dict[str, np.ndarray]:
        """Reward parts ``{name: [N]}``, sharded over the actors and gathered in order."""
        return self.gather(self.submit(contexts, responses, prompt_ids, response_ids))

    def shutdown(self) -> None:
        self.group.shutdown()


def compute_adlf_rewards(
    rewards: RewardConfig,
    inputs: SignalInputs,
    prompt_ids: Sequence[Sequence[int]] | None,
    reward_pool: RewardPool,
    combiner: RewardCombiner,
    critique_pool: CritiquePool | None = None,
) -> RewardBatch:
    """ADLF rewards of N samples (``inputs``, with the reference logprobs when fluency is on):
    the model signals from ``reward_pool``, the pure signals here, the debate from
    ``critique_pool`` (when given) while the reward actors score, all combined by ``combiner``
    (which updates its statistics). ``timings`` gets ``debate_s`` when the critics ran."""
    refs = reward_pool.submit(inputs.contexts, inputs.responses, prompt_ids, inputs.response_ids)
    batch_timings, debate = {}, None
    if critique_pool is not None:
        started = time.perf_counter()
        debate = critique_pool.debate(inputs.contexts, inputs.responses)
        batch_timings["debate_s"] = time.perf_counter() - started
    parts = reward_pool.gather(refs)
    parts.update(pure_parts(inputs, rewards))
    if debate is not None:
        parts.update(debate_parts(debate))
    batch = combiner.combine(parts)
    batch.debate, batch.timings = debate, batch_timings
    return batch
