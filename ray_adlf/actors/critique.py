"""Critique agents as Ray actors: ``CritiqueActor`` holds the critics that share one model, a
``CritiquePool`` runs the debate protocol (``debate/protocol.py``) over them.

Critics on the same local model (``--critic_engine reference``, ``policy`` or ``model``, and the
self-critique critic, which shares the policy critics' model) share one engine in one actor
(``critic_groups``): K critics of a 7B reference hold one copy, not K. Each critic keeps its
persona and its seed, and judges its own requests, so sharing changes no verdict. HTTP critics
get one actor each (their calls wait on the network, not the cores). Each round sends every
actor its critics' requests at once; the pool waits for all of them before the next round
(round r + 1 needs round r's critiques).
Critics on the policy receive the learner's weights from the rollout pool's push (the actors in
``policy_actors`` join its ``WeightSync``: one push a round, verified by fingerprint);
``follow`` tells the pool which version they now hold.

Faults: an actor that dies is restarted by Ray (``max_restarts``) and the call it was serving
is run again on the new process (``max_task_retries``). Judging is a function of the requests,
the weights and the pool's call count (the sampling seed), so the retried call gives the
verdicts the lost one would have, each counted once. Every ``judge`` call carries the pool's
weights version and the last object-store push (``weight_sync.LatestWeights``); a restarted
critic on the policy, back at version 0, loads and verifies it first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import ray
import torch

from ray_adlf.actors.group import ActorGroup
from ray_adlf.actors.weight_sync import LatestWeights, WeightReceiver
from ray_adlf.config import Config
from ray_adlf.cpu_plan import phase_threads
from ray_adlf.data.records import Turn
from ray_adlf.debate.critics import CriticSpec, make_backend, make_critic
from ray_adlf.debate.protocol import DebateResult, JudgeRequest, Verdict, run_debate
from ray_adlf.engines.weights import Fingerprint

CRITIC_DTYPE = "float32"
"""The dtype local critics run in (``debate.critics.HFCriticBackend``)."""


@ray.remote
class CritiqueActor(WeightReceiver):
    """Critics (``debate.critics.Critic``) sharing one backend in one Ray actor process."""

    def __init__(self, specs: list[CriticSpec]) -> None:
        backend = make_backend(specs[0])
        self.critics = [make_critic(spec, backend) for spec in specs]
        self.backend, self.follows_policy = backend, specs[0].follows_policy
        self.version = 0

    def ready(self) -> bool:
        return True

    def judge(
        self,
        requests: list[list[JudgeRequest]],
        call: int,
        version: int,
        latest: LatestWeights | None,
    ) -> list[list[Verdict]]:
        """Each critic's ``Critic.judge(its requests, call)`` with the policy's weights
        ``version`` (``latest`` loaded and verified first when these critics follow the policy
        and hold another)."""
        if self.follows_policy and self.version != version:
            where = "CritiqueActor on the policy"
            self.catch_up(latest, version, self.version, CRITIC_DTYPE, where)
        return [critic.judge(batch, call) for critic, batch in zip(self.critics, requests)]

    def install_weights(self, state_dict: Mapping[str, torch.Tensor], version: int) -> Fingerprint:
        self.backend.load_state_dict(state_dict)
        self.version = version
        return self.backend.fingerprint()


def critic_groups(specs: Sequence[CriticSpec]) -> list[list[int]]:
    """Indices of ``specs`` grouped by the engine they can share: local (``hf``) critics on one
    model with the same ``follows_policy`` together, each HTTP critic alone; first-seen order."""
    groups: dict[tuple, list[int]] = {}
    for k, spec in enumerate(specs):
        key = ("hf", spec.model, spec.follows_policy) if spec.engine == "hf" else ("http", k)
        groups.setdefault(key, []).append(k)
    return list(groups.values())


def critic_specs(cfg: Config, policy_model: str, reference_model: str) -> list[CriticSpec]:
    """``--num_critics`` specs on ``--critic_engine``, personas 0..K-1, seeds ``seed + k``.

    With ``--use_self_critique`` one more critic runs on the policy itself (persona K): the
    policy judges its own responses with the same "Score:" cue its self-critique training used,
    follows the learner's weights every round, and its score enters the debate like any other.
    """
    debate = cfg.debate
    if debate.critic_engine == "policy":
        engine, model, url = "hf", policy_model, None
    elif debate.critic_engine == "reference":
        engine, model, url = "hf", reference_model, None
    elif debate.critic_engine == "model":
        engine, model, url = "hf", str(debate.critic_model), None
    elif debate.critic_engine == "http":
        engine, model, url = "http", debate.critic_model or "default", debate.critic_url
    else:
        raise ValueError(f"unknown critic engine {debate.critic_engine!r}")
    kinds = [(engine, model, url, debate.critic_engine == "policy")] * debate.num_critics
    if cfg.sft.use_self_critique:
        kinds.append(("hf", policy_model, None, True))
    return [
        CriticSpec(
            engine=engine,
            model=model,
            persona=k,
            url=url,
            max_new_tokens=debate.critique_max_new_tokens,
            temperature=debate.critic_temperature,
            seed=cfg.run.seed + k,
            timeout=debate.critic_timeout,
            retries=debate.critic_retries,
            max_response_bytes=cfg.rewards.http_max_response_bytes,
            follows_policy=follows_policy,
        )
        for k, (engine, model, url, follows_policy) in enumerate(kinds)
    ]


class CritiquePool:
    """K CritiqueActors debating in ``rounds`` rounds, aggregated by ``aggregate``."""

    def __init__(
        self,
        specs: Sequence[CriticSpec],
        rounds: int,
        aggregate: str,
        num_cpus: float,
        max_restarts: int = 2,
        num_threads: int = 0,
    ) -> None:
        self.groups = critic_groups(specs)
        self.group = ActorGroup(
            CritiqueActor,
            [([specs[k] for k in members],) for members in self.groups],
            num_cpus=num_cpus,
            max_restarts=max_restarts,
            max_task_retries=max_restarts,
            num_threads=num_threads,
        )
        self.num_critics = len(specs)
        self.policy_actors = [
            actor
            for actor, members in zip(self.group.actors, self.groups)
            if specs[members[0]].follows_policy
        ]
        self.rounds, self.aggregate = rounds, aggregate
        self.version = self.calls = 0
        self._latest: LatestWeights | None = None

    @classmethod
    def from_config(cls, cfg: Config, policy_model: str, reference_model: str) -> CritiquePool:
        specs = critic_specs(cfg, policy_model, reference_model)
        debate = cfg.debate
        return cls(
            specs,
            debate.debate_rounds,
            debate.debate_aggregate,
            cfg.resources.critic_num_cpus,
            max_restarts=cfg.resources.actor_max_restarts,
            num_threads=phase_threads(cfg)["reward"],
        )

    def _judge(self, requests: list[list[JudgeRequest]]) -> list[list[Verdict]]:
        """Critic k's verdicts on ``requests[k]``, from the actor that holds it."""
        self.calls += 1
        refs = [
            actor.judge.remote(
                [requests[k] for k in members], self.calls, self.version, self._latest
            )
            for actor, members in zip(self.group.actors, self.groups)
        ]
        verdicts: list[list[Verdict]] = [[] for _ in requests]
        for members, answers in zip(self.groups, self.group.gather(refs)):
            for k, answer in zip(members, answers):
                verdicts[k] = answer
        return verdicts

    def debate(
        self, contexts: Sequence[Sequence[Turn]], responses: Sequence[str]
    ) -> list[DebateResult]:
        """The debate over each response (``debate.protocol.run_debate``)."""
        return run_debate(
            contexts, responses, self.num_critics, self.rounds, self.aggregate, self._judge
        )

    def follow(self, version: int, latest: LatestWeights | None) -> None:
        """The critics on the policy now hold weights ``version`` (pushed to them as receivers
        of the rollout pool's ``WeightSync``); ``latest`` is that push, for catching up."""
        self.version, self._latest = version, latest

    def shutdown(self) -> None:
        self.group.shutdown()
        self.policy_actors = []
