"""Rollout engines as Ray actors, and the driver-side pool that shards batches over them.

``RolloutActor`` is a thin shell over one engine (``engines.build_engine``) in its own process,
with its own CPUs/GPUs and ``num_threads`` threads (``cpu_plan.phase_threads`` from a config:
the stage's cores in its phase; otherwise ``floor(num_cpus)``, at least 1).

``RolloutPool`` owns N actors (an ``ActorGroup``).

- ``generate``: splits the prompts into N contiguous shards (sizes differ by at most one),
  runs them in parallel and concatenates the results in prompt order. Every call carries the
  pool's weights version and the last object-store push (``weight_sync.LatestWeights``: Ray
  fetches its ref only if asked); an actor whose engine holds another version - a restarted
  actor is back at version 0 - loads and verifies those weights before it serves the shard.
- Failures: a shard whose actor is restarting (``ActorUnavailableError``, Ray's
  ``max_restarts``) is resubmitted to the same actor until it answers or ``retry_timeout_s``
  passes; an actor that is dead for good (``ActorDiedError``: restarts used up) fails the call.
- ``sync_weights``: the pool's ``WeightSync`` (``actors.weight_sync``: object store or
  collective, ``--weight_sync``) pushes the state dict to every actor (and to any other
  receiver added to it, such as critics on the policy) and verifies each one's fingerprint;
  returns the new version (1, 2, ...). An actor that is down during an object-store sync
  catches up on its next shard.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence

import ray
import torch

from ray_adlf.actors.group import ActorGroup
from ray_adlf.actors.weight_sync import (
    LatestWeights,
    SyncMethod,
    SyncTiming,
    WeightReceiver,
    WeightSync,
)
from ray_adlf.config import Config
from ray_adlf.cpu_plan import phase_threads
from ray_adlf.engines.base import GenerationBatch, SamplingParams, ShardTiming, check_prompts
from ray_adlf.engines.select import EngineName, build_engine, choose_engine
from ray_adlf.engines.weights import Fingerprint
from ray_adlf.models.lora import LoraSettings, lora_settings

logger = logging.getLogger(__name__)

RETRY_BACKOFF_S = 0.5


@ray.remote
class RolloutActor(WeightReceiver):
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
        lora: LoraSettings | None,
    ) -> None:
        self.index, self.dtype = index, dtype
        self.engine = build_engine(
            engine,
            model_name,
            dtype=dtype,
            tensor_parallel_size=tensor_parallel_size,
            seed=seed,
            trust_remote_code=trust_remote_code,
            lora=lora,
        )

    def ready(self) -> bool:
        return True

    def version(self) -> int:
        return self.engine.version

    def install_weights(self, state_dict: Mapping[str, torch.Tensor], version: int) -> Fingerprint:
        self.engine.load_weights(state_dict, version)
        return self.engine.fingerprint()

    def generate(
        self,
        prompt_ids: list[list[int]],
        params: SamplingParams,
        version: int,
        latest: LatestWeights | None,
    ) -> tuple[GenerationBatch, float]:
        """Serve a shard with weights ``version``, loading (and verifying) ``latest`` first if
        the engine holds another version. Returns the batch and the catch-up load time (s)."""
        load_s = 0.0
        if self.engine.version != version:
            where = f"RolloutActor {self.index}"
            load_s = self.catch_up(latest, version, self.engine.version, self.dtype, where)
        return self.engine.generate(prompt_ids, params), load_s


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
        weight_sync: SyncMethod = "object_store",
        nccl: bool = False,
        lora: LoraSettings | None = None,
    ) -> None:
        """``lora``: the learner trains an adapter of these settings; the engines hold the
        base with the same (initially zero) adapter and every sync sends the adapter alone."""
        if engine not in ("vllm", "hf"):
            raise ValueError(
                f"engine must be vllm or hf (resolve auto with choose_engine): {engine!r}"
            )
        self.engine = engine
        self.retry_timeout_s = retry_timeout_s
        self.group = ActorGroup(
            RolloutActor,
            [
                (
                    k,
                    engine,
                    model_name,
                    dtype,
                    tensor_parallel_size,
                    seed + k,
                    trust_remote_code,
                    lora,
                )
                for k in range(num_workers)
            ],
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            max_restarts=max_restarts,
            num_threads=num_threads,
        )
        self._version = 0
        self.sync = WeightSync(weight_sync, nccl)
        self.sync.add(self.group.actors, dtype, "RolloutActor", on_gpu=num_gpus > 0)

    @classmethod
    def from_config(cls, cfg: Config, model_name: str) -> RolloutPool:
        """A pool on ``model_name`` as ``cfg.rollout`` asks for it; ``auto`` resolved."""
        rollout, res = cfg.rollout, cfg.resources
        return cls(
            choose_engine(rollout.rollout_engine, rollout.top_k, rollout.top_p, cfg.model.use_lora),
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
            weight_sync=res.weight_sync,
            nccl=res.use_gpu,
            lora=lora_settings(cfg.model),
        )

    @property
    def last_sync(self) -> SyncTiming | None:
        """Where the last ``sync_weights`` spent its time."""
        return self.sync.last

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
                prompts[begin:end], params.for_shard(begin), self._version, self.sync.latest
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
        """Push ``state_dict`` (HF parameter names) to every receiver (the actors, and any
        added to ``sync``), verified; returns the new version (``last_sync``: the timings)."""
        self._version += 1
        self.sync.push(state_dict, self._version)
        return self._version

    def shutdown(self) -> None:
        """Kill the actors (no restart)."""
        self.sync.close()
        self.group.shutdown()
