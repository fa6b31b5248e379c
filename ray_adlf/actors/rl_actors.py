"""The actors of the RL stage as one typed set: start, wait until ready, one weights push,
shutdown.

``RLActors.start`` spawns, from a planned config (CPU shares filled in, ``cpu_plan``), without
waiting for the models to load (``wait_ready`` waits for all of them at once):

- ``rollout``: the RolloutPool on the policy (``--num_rollout_workers``);
- ``reward``: the RewardPool (reward model when ``--adlf_alpha`` < 1, internal signals);
- ``eval``: one RewardPool on the evaluation reward model alone, with ``--eval_every``;
- ``critique``: the CritiquePool, with ``--use_debate_reward``;
- ``reference``: the ReferenceActorPool, with ``--reference_placement actor`` when a round
  uses the reference (``uses_reference``).

Each process gets the threads of its phase (``cpu_plan.phase_threads``). ``push_weights``
sends the policy's state dict once (``--weight_sync``: one object in the object store, or one
collective broadcast) to the rollout engines and the critics that run on the policy, and
checks every receiver's fingerprint of what it loaded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from ray_adlf.actors.critique import CRITIC_DTYPE, CritiquePool
from ray_adlf.actors.group import wait_ready
from ray_adlf.actors.reference import ReferenceActorPool
from ray_adlf.actors.reward import RewardPool
from ray_adlf.actors.rollout import RolloutPool
from ray_adlf.config import Config, uses_reference
from ray_adlf.cpu_plan import phase_threads

log = logging.getLogger(__name__)


@dataclass
class RLActors:
    """The RL stage's pools (module docstring); absent ones are None."""

    rollout: RolloutPool
    reward: RewardPool | None = None
    eval: RewardPool | None = None
    critique: CritiquePool | None = None
    reference: ReferenceActorPool | None = None

    @classmethod
    def start(
        cls,
        cfg: Config,
        policy_path: str,
        reward_model_path: str | None,
        eval_reward_model_path: str | None,
    ) -> RLActors:
        """Spawn every pool ``cfg`` asks for, without waiting: their models load at the same
        time, beside the learner's worker group (``wait_ready``). The ones spawned are killed
        if a later one fails."""
        res, threads = cfg.resources, phase_threads(cfg)
        actors = cls(RolloutPool.from_config(cfg, policy_path))
        try:
            external = reward_model_path if cfg.rewards.adlf_alpha < 1 else None
            actors.reward = RewardPool.from_config(cfg, policy_path, external)
            if cfg.ppo.eval_every:
                actors.eval = RewardPool.from_config(
                    cfg,
                    policy_path,
                    eval_reward_model_path,
                    num_workers=1,
                    signals=("external",),
                    phase="single",
                )
            if cfg.rewards.use_debate_reward:
                actors.critique = CritiquePool.from_config(cfg, policy_path, policy_path)
                followers = actors.critique.policy_actors
                actors.rollout.sync.add(followers, CRITIC_DTYPE, "CritiqueActor", on_gpu=False)
            if cfg.ppo.reference_placement == "actor" and uses_reference(cfg):
                actors.reference = ReferenceActorPool(
                    policy_path,
                    cfg.model.trust_remote_code,
                    res.reward_num_cpus,
                    num_threads=threads["single"],
                )
        except BaseException:
            actors.shutdown()
            raise
        return actors

    def pools(self) -> list:
        """The pools that are on, in start order."""
        every = (self.rollout, self.reward, self.eval, self.critique, self.reference)
        return [pool for pool in every if pool is not None]

    def wait_ready(self, timeout_s: float = 600.0) -> None:
        """Wait for every actor of every pool at once (``actors.group.wait_ready``)."""
        wait_ready([pool.group for pool in self.pools()], timeout_s)

    def push_weights(self, state_dict: Mapping[str, torch.Tensor]) -> float:
        """One verified push of the policy's weights to every consumer (the rollout pool's
        ``WeightSync``, which the critics on the policy joined); returns the seconds it took."""
        started = time.perf_counter()
        version = self.rollout.sync_weights(state_dict)
        if self.critique is not None:
            self.critique.follow(version, self.rollout.sync.latest)
        return time.perf_counter() - started

    def shutdown(self) -> None:
        """Kill every pool's actors; one that fails to stop is logged, the rest still stop."""
        for pool in self.pools():
            try:
                pool.shutdown()
            except Exception as error:  # a dead cluster or actor: stop the others anyway
                log.warning("could not shut down %s: %s", type(pool).__name__, error)
