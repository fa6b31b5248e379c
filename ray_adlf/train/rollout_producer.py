"""Rank 0's rollouts, made in a thread of their own while the learner trains: bounded, in order,
reproducible.

Versions: the policy's weights after the learner's round r are version r (0 = the starting
weights). The sample that the learner trains in round r, at version r - 1, lags it by
``(r - 1) - v`` versions, where v is the version that sampled it. With a lag bound K
(``--max_staleness``, 0 without ``--async_rollout``) round j is sampled with EXACTLY version

    need(j) = max(0, j - 1 - K)

so every sample lags by ``min(K, j - 1)``, never more, and the run is the same every time (a
producer that took whatever version was newest would give timing-dependent results). With K = 0
this is the synchronous round: round j waits for the weights of round j - 1, and the producer
runs no thread: ``take`` makes the round in the calling thread. (A second thread that runs
torch work in the learner's process, the colocated reference's forward, slows the learner's
own torch work by about half even while it waits: two OpenMP thread teams contend for the
cores. Without overlap there is nothing to gain from one.) With K = 1 the engines sample
round j + 1 while the learner trains round j (one-step off-policy).

The learner ``publish``es each new version; the producer pushes the version round j needs to
the engines (``push``) just before sampling it, and drops the older ones. ``take(j)`` waits for
round j. A cut for a checkpoint or an evaluation after round r is ``drain(r)``: it waits until
the producer cannot go on without version r (every round that needs an older one is made), and
holds it there until the learner publishes again (an evaluation's ``push_now`` of version r in
between does not release it), so the rounds in flight, the prompt stream and the reward
statistics it advanced are a consistent state; ``in_flight()`` lists those rounds for the checkpoint, and a resumed run starts its
producer with them. A sample too stale is therefore never made, rather than made and dropped:
no engine time is spent on a sample that cannot be trained, and the batch stays full.

An exception in the producer thread is raised again by the learner's next ``take`` or
``drain``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from ray_adlf.train.rollout_batch import Rollout

Weights = Mapping[str, torch.Tensor]


@dataclass
class ProducedRound:
    """One round's rollout with what it logs: ``metrics`` (reward parts, the weights push that
    preceded it, dynamic sampling's counts), ``timings`` (seconds per phase) and, when the
    ledger records the round, ``samples``: its rows so far (``ledger.schema.scored_columns``)."""

    round_index: int
    rollout: Rollout
    metrics: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    samples: dict[str, list] | None = None

    def to_data(self) -> dict[str, Any]:
        """Plain data for the learner's checkpoint; ``from_data`` restores it."""
        return {
            "round_index": self.round_index,
            "rollout": self.rollout.to_data(),
            "metrics": self.metrics,
            "timings": self.timings,
            "samples": self.samples,
        }

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> ProducedRound:
        return cls(
            data["round_index"],
            Rollout.from_data(data["rollout"]),
            dict(data["metrics"]),
            dict(data["timings"]),
            data.get("samples"),  # None in checkpoints from before the ledger
        )


def needed_version(round_index: int, max_lag: int) -> int:
    """The weights version that samples ``round_index`` (module docstring)."""
    return max(0, round_index - 1 - max_lag)


class RolloutProducer:
    """Makes rounds ``next_round .. last_round`` in a thread (module docstring).

    ``produce(round_index, version)`` samples and scores one round with the engines at
    ``version``; ``push(weights, version)`` loads ``weights`` into the engines and returns the
    push's metrics. The next round made carries the last push's metrics and, as its
    ``sync_s``, the seconds of every push since the round before.
    """

    def __init__(
        self,
        produce: Callable[[int, int], ProducedRound],
        push: Callable[[Weights, int], dict[str, float]],
        max_lag: int,
        next_round: int,
        last_round: int,
        in_flight: list[ProducedRound] = (),
    ) -> None:
        self._produce, self._push, self.max_lag = produce, push, max_lag
        self._next, self._last = next_round, last_round
        self._ready = {item.round_index: item for item in in_flight}
        self._pending: dict[int, Weights] = {}
        self._engine_version: int | None = None
        self._push_metrics: dict[str, float] = {}
        self._push_seconds = 0.0
        self._busy, self._closed, self._held = False, False, False
        self._error: BaseException | None = None
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="rollout-producer", daemon=True)

    def push_now(self, weights: Weights, version: int) -> None:
        """Load ``version`` into the engines from the calling thread: before ``start``, or after
        a ``drain`` (an evaluation of the newest weights)."""
        with self._changed:
            if self._busy:
                raise RuntimeError("push_now while the producer is sampling; drain first")
            self._busy = True
        try:
            self._push_and_record(weights, version)
        finally:
            with self._changed:
                self._busy = False
                self._changed.notify_all()

    def start(self) -> None:
        """Start the thread (after ``push_now`` of the learner's current weights); with no lag
        there is none: ``take`` makes each round."""
        if self.max_lag:
            self._thread.start()

    def publish(self, version: int, weights: Weights) -> None:
        """The learner's weights ``version``; the producer pushes it when a round needs it. Pass
        a copy when the learner will change its tensors before then (K >= 1)."""
        with self._changed:
            self._pending[version] = weights
            self._held = False
            self._changed.notify_all()

    def take(self, round_index: int) -> tuple[ProducedRound, float]:
        """Round ``round_index``'s rollout and the seconds spent waiting for it."""
        started = time.perf_counter()
        if not self.max_lag and round_index not in self._ready:
            if not self._can_start() or self._closed or self._next != round_index:
                raise RuntimeError(
                    f"round {round_index} cannot be made: version "
                    f"{needed_version(round_index, 0)} was not published"
                )
            self._make_next()
        with self._changed:
            self._changed.wait_for(lambda: round_index in self._ready or self._error is not None)
            if round_index not in self._ready:  # a round made before the error is still good
                self._raise()
            return self._ready.pop(round_index), time.perf_counter() - started

    def drain(self, version: int) -> None:
        """Wait until every round that needs a version before ``version`` is made; hold the
        producer there until the next ``publish``."""
        with self._changed:
            self._changed.wait_for(lambda: self._blocked_before(version) or self._error is not None)
            self._raise()
            self._held = True

    def in_flight(self) -> list[ProducedRound]:
        """The rounds made and not yet taken, in order (after ``drain``: a consistent cut)."""
        with self._changed:
            return [self._ready[r] for r in sorted(self._ready)]

    def close(self) -> None:
        """Stop the thread once it has finished the round it is on (it holds no locks then)."""
        with self._changed:
            self._closed = True
            self._pending.clear()
            self._changed.notify_all()

    def _blocked_before(self, version: int) -> bool:
        done = self._next > self._last
        return not self._busy and (done or needed_version(self._next, self.max_lag) >= version)

    def _raise(self) -> None:
        if self._error is not None:
            raise RuntimeError("the rollout producer failed") from self._error

    def _push_and_record(self, weights: Weights, version: int) -> None:
        started = time.perf_counter()
        metrics = self._push(weights, version)
        with self._changed:
            self._engine_version = version
            self._push_metrics = metrics
            self._push_seconds += time.perf_counter() - started

    def _can_start(self) -> bool:
        if self._closed or self._next > self._last:
            return self._closed
        if self._held or self._busy:
            return False
        version = needed_version(self._next, self.max_lag)
        return version == self._engine_version or version in self._pending

    def _make_next(self) -> None:
        """Push the version the next round needs (when the engines lack it) and make the round;
        the caller has checked ``_can_start``."""
        with self._changed:
            round_index = self._next
            version = needed_version(round_index, self.max_lag)
            weights = None
            if version != self._engine_version:
                weights = self._pending[version]
            self._pending = {v: w for v, w in self._pending.items() if v > version}
            self._busy = True
        try:
            if weights is not None:
                self._push_and_record(weights, version)
            item = self._produce(round_index, version)
        except BaseException:
            with self._changed:
                self._busy = False
                self._changed.notify_all()
            raise
        with self._changed:  # made and counted at once: a drain never sees one without the other
            item.metrics.update(self._push_metrics)
            item.timings["sync_s"] = self._push_seconds
            self._push_metrics, self._push_seconds = {}, 0.0
            self._ready[round_index] = item
            self._next += 1
            self._busy = False
            self._changed.notify_all()

    def _run(self) -> None:
        try:
            while True:
                with self._changed:
                    self._changed.wait_for(self._can_start)
                    if self._closed:
                        return
                self._make_next()
        except BaseException as error:  # the learner raises it again in take / drain
            with self._changed:
                self._error = error
                self._changed.notify_all()
