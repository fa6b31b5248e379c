"""Weights broadcast over a torch.distributed group: the learner's rank 0 and every engine.

The group is its own ``ProcessGroupGloo`` (CPU) or ``ProcessGroupNCCL`` (GPU) over a
``TCPStore`` that rank 0 hosts, beside (never inside) the learner's Ray Train group: rank 0 is
the sender, ranks 1..N the engines. Nothing is pickled: a ``Manifest`` (names, dtypes, shapes,
offsets; a few KiB) travels with the call that asks an engine to receive, and the weights' bytes
follow as ``uint8`` buckets::

    bucket b = concat over its tensors of bytes(tensor), each at a 16-byte aligned offset
    size(b) <= bucket_bytes, except a tensor larger than bucket_bytes, which travels alone

so the model never travels as one message, and the receiver's tensors are views into its
bucket buffers (aligned, so any dtype views them without a copy). Tensors that share storage
(tied embeddings) travel once and are listed as aliases.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ray_adlf.engines.weights import TensorSpec, distinct_tensors, dtype_name

ALIGN_BYTES = 16
DEFAULT_BUCKET_BYTES = 64 * 2**20


@dataclass(frozen=True)
class Slot:
    """Where one tensor lies in its bucket: ``bytes[offset : offset + nbytes]``."""

    name: str
    spec: TensorSpec
    offset: int
    nbytes: int


@dataclass(frozen=True)
class Manifest:
    """``buckets[b]``: the slots of bucket b; ``sizes[b]``: its byte length; ``aliases``:
    ``alias -> stored name``."""

    buckets: list[list[Slot]]
    sizes: list[int]
    aliases: dict[str, str]

    @property
    def nbytes(self) -> int:
        return sum(self.sizes)


def aligned(offset: int) -> int:
    """``offset`` rounded up to a multiple of ``ALIGN_BYTES``."""
    return -(-offset // ALIGN_BYTES) * ALIGN_BYTES


def plan_buckets(nbytes: Mapping[str, int], bucket_bytes: int) -> list[list[tuple[str, int]]]:
    """Consecutive names packed into buckets of at most ``bucket_bytes`` (aligned offsets);
    a name larger than ``bucket_bytes`` gets a bucket of its own. -> ``[[(name, offset)]]``."""
    buckets: list[list[tuple[str, int]]] = []
    used = 0
    for name, size in nbytes.items():
        start = aligned(used)
        if not buckets or (start > 0 and start + size > bucket_bytes):
            buckets.append([])
            start = 0
        buckets[-1].append((name, start))
        used = start + size
    return buckets


def make_manifest(state_dict: Mapping[str, torch.Tensor], bucket_bytes: int) -> Manifest:
    """The manifest of ``state_dict`` cut into buckets (``plan_buckets``)."""
    stored, aliases = distinct_tensors(state_dict)
    sizes = {name: t.numel() * t.element_size() for name, t in stored.items()}
    buckets, lengths = [], []
    for plan in plan_buckets(sizes, bucket_bytes):
        slots = [
            Slot(
                name,
                TensorSpec(dtype_name(stored[name].dtype), tuple(stored[name].shape)),
                offset,
                sizes[name],
            )
            for name, offset in plan
        ]
        buckets.append(slots)
        lengths.append(slots[-1].offset + slots[-1].nbytes)
    return Manifest(buckets, lengths, aliases)


class WeightGroup:
    """One rank's end of the weights group (``backend`` gloo or nccl). Rank 0 hosts the
    store: build it with ``port=0`` (a free port, then ``self.port``) and start the others
    with that port; every rank's constructor returns once all ``world`` ranks have joined."""

    def __init__(
        self, host: str, port: int, rank: int, world: int, backend: str, timeout_s: float = 300.0
    ) -> None:
        timeout = datetime.timedelta(seconds=timeout_s)
        self.store = dist.TCPStore(
            host, port, world, is_master=rank == 0, wait_for_workers=False, timeout=timeout
        )
        self.port, self.rank, self.world, self.backend = self.store.port, rank, world, backend
        self.device = torch.device("cuda" if backend == "nccl" else "cpu")
        self._host = host
        self._timeout = timeout
        self.group = None

    def connect(self) -> None:
        """Join the process group; blocks until every rank has called it."""
        if self.backend == "nccl":
            self.group = dist.ProcessGroupNCCL(self.store, self.rank, self.world)
        else:
            self.group = dist.ProcessGroupGloo(self.store, self.rank, self.world, self._timeout)

    def _broadcast(self, buffer: torch.Tensor) -> None:
        options = dist.BroadcastOptions()
        options.rootRank = 0
        self.group.broadcast([buffer], options).wait()

    @torch.no_grad()
    def send(self, state_dict: Mapping[str, torch.Tensor], manifest: Manifest) -> None:
        """Rank 0: each bucket's bytes, built on the group's device, broadcast in turn."""
        stored, _ = distinct_tensors(state_dict)
        for slots, size in zip(manifest.buckets, manifest.sizes, strict=True):
            bucket = torch.empty(size, dtype=torch.uint8, device=self.device)
            for slot in slots:
                source = stored[slot.name].contiguous().reshape(-1).view(torch.uint8)
                bucket[slot.offset : slot.offset + slot.nbytes].copy_(source)
            self._broadcast(bucket)

    def receive(self, manifest: Manifest) -> dict[str, torch.Tensor]:
        """Ranks > 0: the broadcast tensors, views into the received buckets (aliases last)."""
        tensors: dict[str, torch.Tensor] = {}
        for slots, size in zip(manifest.buckets, manifest.sizes, strict=True):
            bucket = torch.empty(size, dtype=torch.uint8, device=self.device)
            self._broadcast(bucket)
            for slot in slots:
                flat = bucket[slot.offset : slot.offset + slot.nbytes]
                tensors[slot.name] = flat.view(getattr(torch, slot.spec.dtype)).view(
                    slot.spec.shape
                )
        return tensors | {alias: tensors[stored] for alias, stored in manifest.aliases.items()}

    def close(self) -> None:
        """Drop the group and the store."""
        self.group = None
        self.store = None
