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
"""

from __future__ import annotations

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


def pack_state_dict(state_dict: Mapping[str, torch.Tensor]) -> PackedWeights:
    """Byte views of ``state_dict`` (moved to CPU and made contiguous only where needed)."""
    buffers: dict[str, np.ndarray] = {}
    specs: dict[str, TensorSpec] = {}
    aliases: dict[str, str] = {}
    stored_by_key: dict[tuple[int, torch.dtype, tuple[int, ...]], str] = {}
    for name, tensor in state_dict.items():
        tensor = tensor.detach()
        key = (tensor.data_ptr(), tensor.dtype, tuple(tensor.shape))
        if key in stored_by_key:
            aliases[name] = stored_by_key[key]
            continue
        stored_by_key[key] = name
        flat = tensor.to("cpu").contiguous().reshape(-1)
        buffers[name] = flat.view(torch.uint8).numpy()
        specs[name] = TensorSpec(str(tensor.dtype).removeprefix("torch."), tuple(tensor.shape))
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
