"""Rollout engines as Ray actors, and the driver-side pool that shards batches over them.

``RolloutActor`` is a thin shell over one engine (``engines.build_engine``) in its own process,
with its own CPUs/GPUs and ``num_threads`` threads (``cpu_plan.phase_threads`` from a config:
the stage's cores in its phase; otherwise ``floor(num_cpus)``, at least 1).

``RolloutPool`` owns N actors (an ``ActorGroup``).

- ``generate``: splits the prompts into N contiguous shards (sizes differ by at most one),
  runs them in parallel and concatenates the results in prompt order. Every call carries the
  pool's weights version and (boxed in a list, so Ray does not fetch it unless asked) the
  object ref of the latest weights; an actor whose engine holds another version - a restarted
  actor is back at version 0 - loads those weights before it serves the shard.
- Failures: a shard whose actor is restarting (``ActorUnavailableError``, Ray's
  ``max_restarts``) is resubmitted to the same actor until it answers or ``retry_timeout_s``
  passes; an actor that is dead for good (``ActorDiedError``: restarts used up) fails the call.
- ``sync_weights``: packs the state dict (``engines.weights``), ``ray.put``s it once, and every
  actor loads it from the object store; returns the new version (1, 2, ...). An actor that is
  down during the sync catches up on its next shard through the same ref.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import ray
import torch

from ray_adlf.actors.group import ActorGroup
from ray_adlf.config import Config
from ray_adlf.cpu_plan import phase_threads
from ray_adlf.engines.base import GenerationBatch, SamplingParams, ShardTiming, check_prompts
from ray_adlf.engines.select import EngineName, build_engine, choose_engine
from ray_adlf.engines.weights import PackedWeights, pack_state_dict, unpack_state_dict

logger = logging.getLogger(__name__)

RETRY_BACKOFF_S = 0.5


@ray.remote
class RolloutActor:
    """One engine in one Ray actor process."""

    def __init__(
        self,
        index: int,
        engine: EngineName,
        model_name: str,
        dtype: str,
        tensor_parallel_size: int,
        seed: int,
        trust_remote_code: bool,
    ) -> None:
        self.index = index
        self.engine = build_engine(
            engine,
            model_name,
            dtype=dtype,
            tensor_parallel_size=tensor_parallel_size,
            seed=seed,
            trust_remote_code=trust_remote_code,
        )

    def ready(self) -> bool:
        return True

    def version(self) -> int:
        return self.engine.version

    def load_weights(self, packed: PackedWeights, version: int) -> float:
        """Load ``packed`` as weights ``version``; returns the engine's load time in seconds."""
        start = time.perf_counter()
        self.engine.load_weights(unpack_state_dict(packed), version)
        return time.perf_counter() - start

    def generate(
        self,
        prompt_ids: list[list[int]],
        params: SamplingParams,
        version: int,
        latest_weights: list[ray.ObjectRef],
    ) -> tuple[GenerationBatch, float]:
        """Serve a shard with weights ``version``, loading ``latest_weights[0]`` first if the
        engine holds another version. Returns the batch and the catch-up load time (s)."""
        load_s = 0.0
        if self.engine.version != version:
            if not latest_weights:
                raise RuntimeError(
                    f"RolloutActor {self.index} holds weights {self.engine.version}, the pool "
                    f"expects {version} but sent no weights"
                )
            logger.warning(
                "RolloutActor %d: loading weights %d (had %d) before serving",
                self.index,
                version,
                self.engine.version,
            )
            load_s = self.load_weights(ray.get(latest_weights[0]), version)
        return self.engine.generate(prompt_ids, params), load_s


@dataclass
class SyncTiming:
    """Seconds spent in the last ``sync_weights``: packing, ``ray.put``, each actor's engine
    load (inside the actor), and the whole call as the driver saw it."""

    pack_s: float
    put_s: float
    load_s: list[float]
    total_s: float
    nbytes: int


class RolloutPool:
    """N RolloutActors behind one ``generate`` and one ``sync_weights``."""

    def __init__(
        self,
        engine: EngineName,
        model_name: str,
        *,
        num_workers: int = 1,
        num_cpus: float = 1.0,
        num_gpus: float = 0.0,
        tensor_parallel_size: int = 1,
        max_restarts: int = 2,
        dtype: str = "float32",
        seed: int = 0,
        trust_remote_code: bool = False,
        retry_timeout_s: float = 600.0,
        num_threads: int = 0,
    ) -> None:
        if engine not in ("vllm", "hf"):
            raise ValueError(
                f"engine must be vllm or hf (resolve auto with choose_engine): {engine!r}"
            )
        self.engine = engine
        self.retry_timeout_s = retry_timeout_s
        self.group = ActorGroup(
            RolloutActor,
            [
                (k, engine, model_name, dtype, tensor_parallel_size, seed + k, trust_remote_code)
                for k in range(num_workers)
            ],
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            max_restarts=max_restarts,
            num_threads=num_threads,
        )
        self._version = 0
        self._latest_weights: list[ray.ObjectRef] = []
        self.last_sync: SyncTiming | None = None

    @classmethod
    def from_config(cls, cfg: Config, model_name: str) -> RolloutPool:
        """A pool on ``model_name`` as ``cfg.rollout`` asks for it; ``auto`` resolved."""
        rollout, res = cfg.rollout, cfg.resources
        return cls(
            choose_engine(rollout.rollout_engine, rollout.top_k, rollout.top_p),
            model_name,
            num_workers=res.num_rollout_workers,
            num_cpus=res.rollout_num_cpus,
            num_gpus=res.rollout_num_gpus,
            tensor_parallel_size=res.tensor_parallel_size,
            max_restarts=res.actor_max_restarts,
            dtype=rollout.rollout_dtype,
            seed=cfg.run.seed,
            trust_remote_code=cfg.model.trust_remote_code,
            num_threads=phase_threads(cfg)["rollout"],
        )

    @property
    def latest_weights(self) -> ray.ObjectRef | None:
        """The object ref of the last synced (packed) weights, for other consumers."""
        return self._latest_weights[0] if self._latest_weights else None

    @property
    def version(self) -> int:
        """Version of the last synced weights (0 = the weights the actors started with)."""
        return self._version

    def versions(self) -> list[int]:
        """Each actor's current weights version (asks the actors)."""
        return self.group.gather([actor.version.remote() for actor in self.group.actors])

    def generate(
        self, prompt_ids: Sequence[Sequence[int]], params: SamplingParams
    ) -> GenerationBatch:
        """Shard, generate, gather in order. Rows prompt-major, ``len(prompt_ids) * n`` of them;
        ``timings`` holds one ShardTiming per non-empty shard."""
        prompts = [list(prompt) for prompt in prompt_ids]
        check_prompts(prompts)
        shards = self.group.split(len(prompts))
        submitted: dict[ray.ObjectRef, int] = {}
        started, retries, deadline = {}, {}, {}

        def submit(k: int) -> None:
            begin, end = shards[k]
            ref = self.group.actors[k].generate.remote(
                prompts[begin:end], params.for_shard(begin), self._version, self._latest_weights
            )
            submitted[ref] = k

        for k, (begin, end) in enumerate(shards):
            if end > begin:
                started[k], retries[k] = time.perf_counter(), 0
                deadline[k] = started[k] + self.retry_timeout_s
                submit(k)
        results: dict[int, tuple[GenerationBatch, float, float]] = {}
        while submitted:
            [ref], _ = ray.wait(list(submitted), num_returns=1)
            k = submitted.pop(ref)
            try:
                batch, load_s = ray.get(ref)
            except ray.exceptions.ActorUnavailableError as err:
                if time.perf_counter() > deadline[k]:
                    raise TimeoutError(
                        f"RolloutActor {k} stayed unavailable for {self.retry_timeout_s} s"
                    ) from err
                retries[k] += 1
                logger.warning("RolloutActor %d unavailable (retry %d): %s", k, retries[k], err)
                time.sleep(RETRY_BACKOFF_S)
                submit(k)
                continue
            results[k] = (batch, load_s, time.perf_counter() - started[k])
        ordered = []
        for k in sorted(results):
            batch, load_s, call_s = results[k]
            batch.timings = [
                ShardTiming(
                    actor=k,
                    prompts=shards[k][1] - shards[k][0],
                    samples=len(batch),
                    response_tokens=batch.num_response_tokens,
                    engine_s=batch.engine_s,
                    weight_load_s=load_s,
                    call_s=call_s,
                    retries=retries[k],
                )
            ]
            ordered.append(batch)
        return GenerationBatch.concat(ordered)

    def sync_weights(self, state_dict: Mapping[str, torch.Tensor]) -> int:
        """Send ``state_dict`` (HF parameter names) to every actor: one ``ray.put``, N loads.

        Returns the new version. ``last_sync`` records where the time went.
        """
        start = time.perf_counter()
        packed = pack_state_dict(state_dict)
        packed_at = time.perf_counter()
        ref = ray.put(packed)
        put_at = time.perf_counter()
        self._version += 1
        self._latest_weights = [ref]
        loads = [actor.load_weights.remote(ref, self._version) for actor in self.group.actors]
        load_s = []
        for k, load in enumerate(loads):
            try:
                load_s.append(ray.get(load))
            except ray.exceptions.ActorUnavailableError as err:
                logger.warning(
                    "RolloutActor %d missed weights %d (%s); it loads them before its next shard",
                    k,
                    self._version,
                    err,
                )
                load_s.append(math.nan)
        self.last_sync = SyncTiming(
            pack_s=packed_at - start,
            put_s=put_at - packed_at,
            load_s=load_s,
            total_s=time.perf_counter() - start,
            nbytes=packed.nbytes,
        )
        return self._version

    def shutdown(self) -> None:
        """Kill the actors (no restart)."""
        self.group.shutdown()
