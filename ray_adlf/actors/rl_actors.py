"""The actors of the RL stage as one typed set: start, one weights push, shutdown.

``RLActors.start`` starts, from a planned config (CPU shares filled in, ``cpu_plan``):

- ``rollout``: the RolloutPool on the policy (``--num_rollout_workers``);
- ``reward``: the RewardPool (reward model when ``--adlf_alpha`` < 1, internal signals);
- ``eval``: one RewardPool on the evaluation reward model alone, with ``--eval_every``;
- ``critique``: the CritiquePool, with ``--use_debate_reward``;
- ``reference``: the ReferenceActorPool, with ``--reference_placement actor``.

Each process gets the threads of its phase (``cpu_plan.phase_threads``). ``push_weights``
packs the policy's state dict and puts it in the object store once; the rollout engines and
the critics that run on the policy load that one object.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from ray_adlf.actors.critique import CritiquePool
from ray_adlf.actors.reference import ReferenceActorPool
from ray_adlf.actors.reward import RewardPool
from ray_adlf.actors.rollout import RolloutPool
from ray_adlf.config import Config, from_dict, to_dict
from ray_adlf.cpu_plan import phase_threads
from ray_adlf.train.rl_eval import eval_reward_config

log = logging.getLogger(__name__)


@dataclass
class RLActors:
    """The RL stage's pools (module docstring); absent ones are None."""

    rollout: RolloutPool
    reward: RewardPool
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
        """Every pool ``cfg`` asks for; the ones started are shut down if a later one fails."""
        res, threads = cfg.resources, phase_threads(cfg)
        policy_cfg = from_dict(to_dict(cfg))
        policy_cfg.model.model_name = policy_path
        started: list = []
        try:
            rollout = RolloutPool.from_config(policy_cfg)
            started.append(rollout)
            external = reward_model_path if cfg.rewards.adlf_alpha < 1 else None
            actors = cls(rollout, RewardPool.from_config(cfg, policy_path, external))
            started.append(actors.reward)
            if cfg.ppo.eval_every:
                actors.eval = RewardPool(
                    eval_reward_config(cfg),
                    policy_path,
                    eval_reward_model_path,
                    cfg.data.token_format,
                    cfg.data.max_seq_length,
                    num_workers=1,
                    num_cpus=res.reward_num_cpus,
                    max_restarts=res.actor_max_restarts,
                    num_threads=threads["single"],
                )
                started.append(actors.eval)
            if cfg.rewards.use_debate_reward:
                actors.critique = CritiquePool.from_config(cfg, policy_path, policy_path)
                started.append(actors.critique)
            if cfg.ppo.reference_placement == "actor":
                actors.reference = ReferenceActorPool(
                    policy_path,
                    cfg.model.trust_remote_code,
                    res.reward_num_cpus,
                    num_threads=threads["single"],
                )
        except BaseException:
            for pool in started:
                pool.shutdown()
            raise
        return actors

    def push_weights(self, state_dict: Mapping[str, torch.Tensor]) -> float:
        """One pack and ``ray.put`` of the policy's weights, loaded by every consumer; returns
        the seconds it took."""
        started = time.perf_counter()
        self.rollout.sync_weights(state_dict)
        if self.critique is not None:
            self.critique.sync_weights(self.rollout.latest_weights)
        return time.perf_counter() - started

    def shutdown(self) -> None:
        """Kill every pool's actors; one that fails to stop is logged, the rest still stop."""
        for pool in (self.rollout, self.reward, self.eval, self.critique, self.reference):
            if pool is None:
                continue
            try:
                pool.shutdown()
            except Exception as error:  # a dead cluster or actor: stop the others anyway
                log.warning("could not shut down %s: %s", type(pool).__name__, error)
