"""How the learner's weights reach every actor that holds the policy, verified each time.

``WeightSync`` runs where the learner's rank 0 runs and pushes one state dict (HF names) to its
receivers, one of two ways (``--weight_sync``):

- ``object_store``: ``pack_state_dict``, one ``ray.put``, every receiver loads that object (on
  the same node through shared-memory views); a receiver that missed the push (restarted) loads
  it later from ``latest``;
- ``collective``: an ``engines.collective.WeightGroup`` of rank 0 and every receiver (gloo, or
  NCCL when asked and every receiver is on a GPU), built at the first push: a small manifest
  goes with the call, the bytes follow as bucketed broadcasts, nothing pickled. A receiver that
  restarts cannot rejoin the group: its next call fails with a clear error and the run resumes
  from its last checkpoint.

Either way every receiver answers with the fingerprint of the weights it holds after loading
(``engines.weights.weights_fingerprint``); the push compares it with the sender's, cast to the
dtype the receiver holds each tensor in, and raises ``WeightSyncError`` on any difference.

``WeightReceiver`` is the receivers' side, shared by ``RolloutActor`` and ``CritiqueActor``:
they implement ``install_weights(state_dict, version) -> Fingerprint``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import ray
import torch

from ray_adlf.engines.collective import DEFAULT_BUCKET_BYTES, Manifest, WeightGroup, make_manifest
from ray_adlf.engines.weights import (
    Fingerprint,
    PackedWeights,
    WeightSyncError,
    held_in_other_dtypes,
    pack_state_dict,
    unpack_state_dict,
    verify_fingerprint,
    weights_fingerprint,
)

logger = logging.getLogger(__name__)

SyncMethod = Literal["object_store", "collective"]


@dataclass(frozen=True)
class LatestWeights:
    """The last object-store push, for a receiver that missed it: the packed weights' ref and
    the sender's fingerprint per receiver dtype. Passed inside a call's arguments, so Ray does
    not fetch the ref unless the receiver asks for it."""

    ref: ray.ObjectRef
    version: int
    fingerprints: dict[str, Fingerprint]


@dataclass
class SyncTiming:
    """Where the last push's time went (seconds): ``prepare_s`` packing or the manifest,
    ``send_s`` the ``ray.put`` or the broadcasts, ``fingerprint_s`` the sender's fingerprints,
    ``load_s`` each receiver's load (inside it) and ``total_s`` the whole push."""

    method: SyncMethod
    prepare_s: float
    send_s: float
    fingerprint_s: float
    load_s: list[float]
    total_s: float
    nbytes: int
    verified: bool


@dataclass
class Receivers:
    """Actors that load the policy's weights, each with its dtype and a label for errors."""

    actors: list = field(default_factory=list)
    dtypes: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    on_gpu: list[bool] = field(default_factory=list)


class WeightReceiver:
    """Receiver side of ``WeightSync``, mixed into a ``@ray.remote`` class."""

    weight_group: WeightGroup | None = None

    def install_weights(self, state_dict: Mapping[str, torch.Tensor], version: int) -> Fingerprint:
        """Load ``state_dict`` as weights ``version``; the fingerprint of what is now held."""
        raise NotImplementedError

    def load_weights(self, packed: PackedWeights, version: int) -> tuple[float, Fingerprint]:
        """Object-store push: load ``packed``. Returns (seconds, fingerprint)."""
        start = time.perf_counter()
        fingerprint = self.install_weights(unpack_state_dict(packed), version)
        return time.perf_counter() - start, fingerprint

    def catch_up(
        self, latest: LatestWeights | None, version: int, held: int, dtype: str, where: str
    ) -> float:
        """Load push ``version``, which this receiver (holding ``held``) missed, from ``latest``
        and verify it; returns the seconds it took. No such push to load is an error."""
        if latest is None or latest.version != version:
            raise RuntimeError(
                f"{where} holds weights {held}, the pool expects {version} and has no copy of "
                "them to catch up from (a restarted receiver cannot rejoin --weight_sync "
                "collective); resume from the last checkpoint"
            )
        logger.warning("%s: loading weights %d (had %d) before serving", where, version, held)
        load_s, fingerprint = self.load_weights(ray.get(latest.ref), latest.version)
        verify_fingerprint(latest.fingerprints[dtype], fingerprint, where, latest.version)
        return load_s

    def join_weight_group(self, host: str, port: int, rank: int, world: int, backend: str) -> None:
        """Connect to the collective group that rank 0 hosts at ``host:port``."""
        self.weight_group = WeightGroup(host, port, rank, world, backend)
        self.weight_group.connect()

    def in_weight_group(self) -> bool:
        """Whether this process joined the collective group (a restarted one has not)."""
        return self.weight_group is not None

    def receive_weights(self, manifest: Manifest, version: int) -> tuple[float, Fingerprint]:
        """Collective push: receive the broadcast, load it. Returns (seconds, fingerprint)."""
        start = time.perf_counter()
        fingerprint = self.install_weights(self.weight_group.receive(manifest), version)
        return time.perf_counter() - start, fingerprint


class WeightSync:
    """Pushes the learner's weights to ``receivers`` (module docstring)."""

    def __init__(
        self,
        method: SyncMethod = "object_store",
        nccl: bool = False,
        bucket_bytes: int = DEFAULT_BUCKET_BYTES,
    ) -> None:
        """``nccl``: the learner is on a GPU; the collective group uses NCCL when every
        receiver is too (gloo otherwise)."""
        if method not in ("object_store", "collective"):
            raise ValueError(f"weight sync must be object_store or collective: {method!r}")
        self.method, self.nccl, self.bucket_bytes = method, nccl, bucket_bytes
        self.receivers = Receivers()
        self.latest: LatestWeights | None = None
        self.last: SyncTiming | None = None
        self._group: WeightGroup | None = None

    def add(self, actors: list, dtype: str, kind: str, on_gpu: bool) -> None:
        """Receivers of ``dtype`` (before the first collective push: the group is fixed then)."""
        if self._group is not None:
            raise RuntimeError("receivers cannot join a collective weight group once it is built")
        self.receivers.actors += list(actors)
        self.receivers.dtypes += [dtype] * len(actors)
        self.receivers.labels += [f"{kind} {k}" for k in range(len(actors))]
        self.receivers.on_gpu += [on_gpu] * len(actors)

    def push(self, state_dict: Mapping[str, torch.Tensor], version: int) -> SyncTiming:
        """Send ``state_dict`` as weights ``version`` to every receiver and verify each. The
        sender's fingerprints are taken while the receivers load."""
        start = time.perf_counter()
        actors, dtypes = self.receivers.actors, self.receivers.dtypes
        if self.method == "object_store":
            packed = pack_state_dict(state_dict)
            prepared = time.perf_counter()
            ref = ray.put(packed)
            sent = time.perf_counter()
            loads = [actor.load_weights.remote(ref, version) for actor in actors]
            nbytes = packed.nbytes
        else:
            group = self._connect()
            self._check_members()
            manifest = make_manifest(state_dict, self.bucket_bytes)
            prepared = time.perf_counter()
            loads = [actor.receive_weights.remote(manifest, version) for actor in actors]
            group.send(state_dict, manifest)
            sent = time.perf_counter()
            nbytes = manifest.nbytes
        fingerprints = {dtype: weights_fingerprint(state_dict, dtype) for dtype in set(dtypes)}
        fingerprinted = time.perf_counter()
        answers = self._gather(loads, version)
        for (_, got), dtype, label in zip(answers, dtypes, self.receivers.labels, strict=True):
            if got is None:
                continue
            other = held_in_other_dtypes(fingerprints[dtype], got)
            if other:  # tensors this kind of receiver keeps in another dtype: in theirs
                fingerprints[dtype] |= weights_fingerprint(
                    {name: state_dict[name] for name in other}, other
                )
            verify_fingerprint(fingerprints[dtype], got, label, version)
        if self.method == "object_store":
            self.latest = LatestWeights(ref, version, fingerprints)
        self.last = SyncTiming(
            method=self.method,
            prepare_s=prepared - start,
            send_s=sent - prepared,
            fingerprint_s=fingerprinted - sent,
            load_s=[load_s for load_s, _ in answers],
            total_s=time.perf_counter() - start,
            nbytes=nbytes,
            verified=all(got is not None for _, got in answers),
        )
        return self.last

    def _gather(
        self, loads: list[ray.ObjectRef], version: int
    ) -> list[tuple[float, Fingerprint | None]]:
        """Each receiver's answer; one that is restarting missed the push: it loads ``latest``
        before it next serves (``WeightReceiver.catch_up``), so it is logged, not fatal."""
        answers: list[tuple[float, Fingerprint | None]] = []
        for label, load in zip(self.receivers.labels, loads, strict=True):
            try:
                answers.append(ray.get(load))
            except ray.exceptions.ActorUnavailableError as err:
                logger.warning("%s missed weights %d (%s); it catches up", label, version, err)
                answers.append((math.nan, None))
        return answers

    def _check_members(self) -> None:
        """Every receiver is still the process that joined the group (one round trip), so a
        broadcast never waits on a restarted one."""
        joined = ray.get([actor.in_weight_group.remote() for actor in self.receivers.actors])
        lost = [label for label, ok in zip(self.receivers.labels, joined, strict=True) if not ok]
        if lost:
            raise WeightSyncError(
                f"{', '.join(lost)} restarted and left the collective weight group, which "
                "cannot take new members; resume from the last checkpoint (or use "
                "--weight_sync object_store, whose receivers catch up on their own)"
            )

    def _connect(self) -> WeightGroup:
        """The collective group, built on first use: rank 0 here, receivers 1..N."""
        if self._group is None:
            host = ray.util.get_node_ip_address()
            world = len(self.receivers.actors) + 1
            backend = "nccl" if self.nccl and all(self.receivers.on_gpu) else "gloo"
            group = WeightGroup(host, 0, 0, world, backend)
            joins = [
                actor.join_weight_group.remote(host, group.port, rank, world, backend)
                for rank, actor in enumerate(self.receivers.actors, start=1)
            ]
            group.connect()
            ray.get(joins)
            self._group = group
        return self._group

    def close(self) -> None:
        """Drop the collective group (receivers' ends go with their processes)."""
        if self._group is not None:
            self._group.close()
            self._group = None
