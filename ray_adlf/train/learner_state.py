"""The RL learner's state on disk: plain values as JSON, tensors as safetensors.

``save_learner_state(directory, state)`` writes two files, each atomically:

- ``learner_state.json``: the nested state (``RLLearner.state_dict``: round, prompt stream,
  KL controller, reward statistics, critic call count, evaluation baseline, value head or
  critic weights, optimizer and scheduler state, RNG states; and the W&B run id) with every
  tensor replaced by ``{"__tensor__": KEY}``;
- ``learner_state.safetensors``: those tensors under their keys.

Neither format can carry code, so a crafted checkpoint in shared storage is only data.
JSON lacks tuples and non-string keys, which optimizer and RNG states hold; they are tagged:
a tuple is ``{"__tuple__": [...]}``, a dict whose keys are not all plain strings (an int
key, or a string starting with ``__``) is ``{"__items__": [[key, value], ...]}``. NumPy arrays
are stored as tensors (``uint32`` as ``int64``, which safetensors' torch side lacks) and
NumPy scalars as Python numbers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch

from ray_adlf.files import atomic_write_bytes, atomic_write_text

VALUES_FILE = "learner_state.json"
TENSORS_FILE = "learner_state.safetensors"


def encode(value: Any, tensors: dict[str, torch.Tensor], where: str = "state") -> Any:
    """``value`` as JSON-ready data; each tensor is moved into ``tensors`` (module docstring)."""
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value.astype(np.int64) if value.dtype == np.uint32 else value)
    if isinstance(value, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = value.detach().cpu()
        return {"__tensor__": key}
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, tuple):
        return {"__tuple__": [encode(item, tensors, where) for item in value]}
    if isinstance(value, list):
        return [encode(item, tensors, where) for item in value]
    if isinstance(value, dict):
        if all(isinstance(key, str) and not key.startswith("__") for key in value):
            return {key: encode(item, tensors, f"{where}.{key}") for key, item in value.items()}
        return {
            "__items__": [
                [encode(key, tensors, where), encode(item, tensors, f"{where}.{key}")]
                for key, item in value.items()
            ]
        }
    raise TypeError(f"{where}: a {type(value).__name__} cannot be saved in the learner state")


def decode(value: Any, tensors: dict[str, torch.Tensor], source: Path) -> Any:
    """Inverse of ``encode``; a reference to a tensor that is not there is a ValueError."""
    if isinstance(value, list):
        return [decode(item, tensors, source) for item in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"__tensor__"}:
        key = value["__tensor__"]
        if key not in tensors:
            raise ValueError(f"{source}: tensor {key!r} is missing from {TENSORS_FILE}")
        return tensors[key]
    if set(value) == {"__tuple__"}:
        return tuple(decode(item, tensors, source) for item in value["__tuple__"])
    if set(value) == {"__items__"}:
        return {
            decode(key, tensors, source): decode(item, tensors, source)
            for key, item in value["__items__"]
        }
    return {key: decode(item, tensors, source) for key, item in value.items()}


def unshared(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``tensors`` with every tensor that shares storage with an earlier one (tied weights)
    copied, as safetensors requires; the others are saved without a copy."""
    seen: set[int] = set()
    out = {}
    for key, tensor in tensors.items():
        pointer = tensor.untyped_storage().data_ptr()
        if tensor.numel() and pointer in seen:
            tensor = tensor.clone()
        seen.add(pointer)
        out[key] = tensor.contiguous()
    return out


def save_learner_state(directory: Path, state: dict[str, Any]) -> None:
    """Write ``state`` as ``learner_state.json`` + ``learner_state.safetensors``."""
    tensors: dict[str, torch.Tensor] = {}
    values = encode(state, tensors)
    atomic_write_bytes(directory / TENSORS_FILE, safetensors.torch.save(unshared(tensors)))
    atomic_write_text(directory / VALUES_FILE, json.dumps(values, indent=1) + "\n")


def load_learner_state(directory: Path) -> dict[str, Any]:
    """Read what ``save_learner_state`` wrote; a damaged file is a ValueError naming it."""
    values_path, tensors_path = directory / VALUES_FILE, directory / TENSORS_FILE
    for path in (values_path, tensors_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: the checkpoint has no learner state")
    try:
        values = json.loads(values_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{values_path}: not a learner state ({error})") from None
    try:
        tensors = safetensors.torch.load_file(tensors_path)
    except Exception as error:  # safetensors raises its own error types for damaged files
        raise ValueError(f"{tensors_path}: not a safetensors file ({error})") from None
    state = decode(values, tensors, values_path)
    if not isinstance(state, dict):
        raise ValueError(f"{values_path}: not a learner state (a JSON object was expected)")
    return state
