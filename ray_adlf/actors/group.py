"""The one way the pools spawn, shard, gather and kill their actors.

``ActorGroup`` starts N actors of one ``@ray.remote`` class without waiting for their
constructors (several groups load their models at the same time; Ray queues calls until an
actor is up), ``wait_ready`` waits for any number of groups at once with a clear error when the
cluster cannot place them, ``split`` cuts a batch into contiguous shards (``split_evenly``),
``gather`` returns the shards' results in order, and ``shutdown`` kills the actors.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import ray

from ray_adlf.cpu_plan import thread_env


def split_evenly(count: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous ``(begin, end)`` ranges over ``range(count)``; sizes differ by <= 1,
    larger ones first; some are empty when ``count < parts``."""
    base, extra = divmod(count, parts)
    bounds, begin = [], 0
    for k in range(parts):
        end = begin + base + (1 if k < extra else 0)
        bounds.append((begin, end))
        begin = end
    return bounds


class ActorGroup:
    """N actors of ``actor_class``, one per entry of ``args`` (each its constructor's
    arguments), each with ``num_cpus`` / ``num_gpus`` and ``num_threads`` threads
    (``floor(num_cpus)``, at least 1, when 0). The class needs a ``ready()`` method."""

    def __init__(
        self,
        actor_class,
        args: Sequence[tuple],
        *,
        num_cpus: float,
        num_gpus: float = 0.0,
        max_restarts: int = 0,
        max_task_retries: int = 0,
        num_threads: int = 0,
    ) -> None:
        options = actor_class.options(
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            max_restarts=max_restarts,
            max_task_retries=max_task_retries,
            runtime_env=thread_env(num_threads or num_cpus),
        )
        self.kind = actor_class.__ray_metadata__.class_name
        self.num_cpus = num_cpus
        self.actors = [options.remote(*arguments) for arguments in args]

    def __len__(self) -> int:
        return len(self.actors)

    def split(self, count: int) -> list[tuple[int, int]]:
        """Contiguous ``(begin, end)`` shards of ``count`` items, one per actor."""
        return split_evenly(count, len(self.actors))

    @staticmethod
    def gather(refs: Sequence[ray.ObjectRef]) -> list[Any]:
        """The results of ``refs``, in order."""
        return ray.get(list(refs))

    def shutdown(self) -> None:
        """Kill the actors (no restart)."""
        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        self.actors = []


def wait_ready(groups: Iterable[ActorGroup], timeout_s: float = 600.0) -> None:
    """Wait for every actor's constructor in ``groups`` together; a clear error instead of
    waiting forever when the cluster cannot place them (the groups are killed)."""
    groups = list(groups)
    try:
        ray.get([a.ready.remote() for g in groups for a in g.actors], timeout=timeout_s)
    except ray.exceptions.GetTimeoutError:
        waiting = ", ".join(f"{len(g)} {g.kind}(s) asking {g.num_cpus:g} CPU each" for g in groups)
        for group in groups:
            group.shutdown()
        free = ray.available_resources().get("CPU", 0.0)
        raise RuntimeError(
            f"{waiting}: not started within {timeout_s:.0f} s ({free:g} CPUs free in the "
            "cluster): lower their CPU request or the number of workers"
        ) from None
