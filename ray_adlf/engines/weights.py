"""Weights in a form that crosses process boundaries with one copy: flat byte arrays.

``pack_state_dict`` views every tensor as a flat ``uint8`` numpy array (no copy for contiguous
CPU tensors; any dtype, bfloat16 included) and records dtype and shape. Tensors that share
storage (tied embeddings: ``lm_head.weight`` is ``model.embed_tokens.weight``) are stored once
and listed as aliases. Putting the result in Ray's object store is the one serialising copy:
numpy arrays travel out of band, and on the same node ``ray.get`` hands back read-only views of
the shared-memory buffer.

``unpack_state_dict`` turns those buffers back into tensors without copying; engines then copy
them into their own parameters (``load_state_dict`` / vLLM ``load_weights``), which only read
their source.

Every sync verifies itself with ``weights_fingerprint``: per tensor, in float64 after casting to
the dtype the engine holds it in, ``(sum x, sum x^2, numel, dtype)``. The engine computes it over
the weights it holds after loading, the sender over what it meant to send;
``fingerprint_mismatches`` names the tensors whose fingerprints differ beyond float64
summation-order rounding, bounded by ``|sum x| <= sqrt(n * sum x^2)``: a changed element (past
that bound), a NaN, a stale, missing or partly loaded tensor shows; a permutation inside one
tensor does not (no transfer fault looks like one).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class TensorSpec:
    dtype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class PackedWeights:
    """``buffers[name]``: the tensor's bytes, flat uint8 [nbytes]; ``specs[name]``: dtype and
    shape; ``aliases[name] = stored_name`` for tensors that share storage with a stored one."""

    buffers: dict[str, np.ndarray]
    specs: dict[str, TensorSpec]
    aliases: dict[str, str]

    @property
    def nbytes(self) -> int:
        return sum(buffer.nbytes for buffer in self.buffers.values())


Fingerprint = dict[str, tuple[float, float, int, str]]
"""Tensor name -> ``(sum x, sum x^2, numel, dtype summed)`` in float64 (``weights_fingerprint``)."""

SUM_RTOL = 1e-9
FINGERPRINT_CHUNK = 2**20  # elements cast to float64 at a time: cache-sized, no model-sized copy


class WeightSyncError(RuntimeError):
    """An engine's weights after a sync are not the weights the learner sent."""


def distinct_tensors(
    state_dict: Mapping[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """``(stored, aliases)``: each storage once under its first name, and ``alias -> stored
    name`` for tensors that share it (tied embeddings)."""
    stored: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    stored_by_key: dict[tuple[int, torch.dtype, tuple[int, ...]], str] = {}
    for name, tensor in state_dict.items():
        tensor = tensor.detach()
        key = (tensor.data_ptr(), tensor.dtype, tuple(tensor.shape))
        if key in stored_by_key:
            aliases[name] = stored_by_key[key]
        else:
            stored_by_key[key] = name
            stored[name] = tensor
    return stored, aliases


def copy_weights(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A CPU copy of ``state_dict`` in which tensors that shared storage (tied embeddings)
    share one copy, so it packs and fingerprints as the original does."""
    stored, aliases = distinct_tensors(state_dict)
    copies = {name: tensor.to("cpu", copy=True) for name, tensor in stored.items()}
    return {name: copies[aliases.get(name, name)] for name in state_dict}


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` -> ``"bfloat16"``."""
    return str(dtype).removeprefix("torch.")


def pack_state_dict(state_dict: Mapping[str, torch.Tensor]) -> PackedWeights:
    """Byte views of ``state_dict`` (moved to CPU and made contiguous only where needed)."""
    stored, aliases = distinct_tensors(state_dict)
    buffers: dict[str, np.ndarray] = {}
    specs: dict[str, TensorSpec] = {}
    for name, tensor in stored.items():
        flat = tensor.to("cpu").contiguous().reshape(-1)
        buffers[name] = flat.view(torch.uint8).numpy()
        specs[name] = TensorSpec(dtype_name(tensor.dtype), tuple(tensor.shape))
    return PackedWeights(buffers=buffers, specs=specs, aliases=aliases)


def unpack_state_dict(packed: PackedWeights) -> dict[str, torch.Tensor]:
    """Tensors over ``packed``'s buffers (no copy): stored names first, then the aliases.

    The tensors may be read-only (object-store memory); copy them before writing.
    """
    tensors: dict[str, torch.Tensor] = {}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        for name, buffer in packed.buffers.items():
            spec = packed.specs[name]
            flat = torch.from_numpy(buffer).view(getattr(torch, spec.dtype))
            tensors[name] = flat.view(spec.shape)
    return tensors | {alias: tensors[stored] for alias, stored in packed.aliases.items()}


@torch.no_grad()
def weights_fingerprint(
    state_dict: Mapping[str, torch.Tensor], dtype: str | Mapping[str, str] | None = None
) -> Fingerprint:
    """``name -> (sum x, sum x^2, numel, dtype)`` of every tensor, floating ones cast first to
    ``dtype`` (the engine's, one for all or one per name; None keeps each tensor's own; integer
    tensors keep theirs), summed in float64 on the tensor's device, a chunk of
    ``FINGERPRINT_CHUNK`` elements at a time. ``dtype`` in the result is the one summed."""
    fingerprint: Fingerprint = {}
    for name, tensor in state_dict.items():
        flat = tensor.detach().reshape(-1)
        target = dtype.get(name) if isinstance(dtype, Mapping) else dtype
        if target is None or not flat.is_floating_point():
            target = dtype_name(flat.dtype)
        total = squares = 0.0
        for start in range(0, flat.numel(), FINGERPRINT_CHUNK):
            chunk = flat[start : start + FINGERPRINT_CHUNK].to(getattr(torch, target)).double()
            total += chunk.sum().item()
            squares += torch.dot(chunk, chunk).item()
        fingerprint[name] = (total, squares, flat.numel(), target)
    return fingerprint


def held_in_other_dtypes(expected: Fingerprint, got: Fingerprint) -> dict[str, str]:
    """Names ``got`` holds in another dtype than ``expected`` was cast to (a module an engine
    keeps in float32, say): ``name -> the dtype held``, to fingerprint again in it."""
    return {
        name: entry[3]
        for name, entry in got.items()
        if name in expected and expected[name][3] != entry[3]
    }


def fingerprint_mismatches(expected: Fingerprint, got: Fingerprint) -> list[str]:
    """Names missing from ``got``, unexpected in it, held in another dtype, or whose sums
    differ (NaN differs from everything): ``sum x`` by more than ``SUM_RTOL * sqrt(n * sum
    x^2)``, ``sum x^2`` by more than ``SUM_RTOL * sum x^2`` (float64 rounding of a different
    summation order stays far below both; a change of one element shows once it exceeds them,
    about ``1e-9 * sqrt(n)`` times the tensor's root mean square)."""
    wrong = sorted(set(expected) ^ set(got))
    for name in expected.keys() & got.keys():
        (s1, s2, n, kind), (g1, g2, m, held) = expected[name], got[name]
        scale = math.sqrt(n * s2)
        same = (
            n == m
            and kind == held
            and abs(s1 - g1) <= SUM_RTOL * scale
            and abs(s2 - g2) <= SUM_RTOL * s2
        )
        if not same:
            wrong.append(name)
    return sorted(wrong)


def verify_fingerprint(expected: Fingerprint, got: Fingerprint, where: str, version: int) -> None:
    """Raise ``WeightSyncError`` naming the first tensors that differ after sync ``version``."""
    wrong = fingerprint_mismatches(expected, got)
    if wrong:
        shown = ", ".join(wrong[:3]) + (f" and {len(wrong) - 3} more" if len(wrong) > 3 else "")
        raise WeightSyncError(
            f"{where}: after weights sync {version}, {len(wrong)} of {len(expected)} tensors "
            f"differ from the learner's ({shown}); the engine would sample from weights the "
            "learner never had, so the run stops (resume from the last checkpoint)"
        )
