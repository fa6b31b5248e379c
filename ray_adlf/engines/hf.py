"""Plain transformers ``generate`` as a rollout engine (no vLLM needed; the reference engine).

Each prompt is repeated ``n`` times (prompt-major rows) and the rows are left-padded into one
``generate`` call, which also returns the raw logits of every step (``output_logits``). The
engine turns them into the learner's quantity::

    logprob[i, t] = log_softmax(logits[i, t] / T)[y[i, t]]     T = temperature (1 when greedy)

Top-k / top-p only decide which tokens can be drawn; they never renormalise the logprob. The
model's own ``generation_config`` is replaced by one that holds only its special tokens, so no
hidden default (repetition penalty, top_k=50, ...) changes what is sampled.

Randomness: each call seeds torch with ``params.seed``, or with the next draw of the engine's
own generator (seeded by ``seed``) when the call has none; the caller's RNG state is restored
afterwards, so the engine never disturbs a learner running in the same process.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence

import torch

from ray_adlf.engines.base import GenerationBatch, SamplingParams, check_prompts, eos_token_ids
from ray_adlf.engines.weights import Fingerprint, weights_fingerprint
from ray_adlf.models.loading import load_causal_lm, load_tokenizer, resolve_model_path
from ray_adlf.models.lora import LoraSettings, adapter_state_dict, add_lora, load_adapter_state


class HFEngine:
    """A causal LM on one device, generating with ``model.generate``."""

    def __init__(
        self,
        model_name: str,
        *,
        dtype: str = "float32",
        seed: int = 0,
        device: str | None = None,
        trust_remote_code: bool = False,
        lora: LoraSettings | None = None,
    ) -> None:
        """``lora``: the model carries an adapter of these settings, and ``load_weights`` takes
        adapter tensors (``models.lora.adapter_state_dict`` names) instead of full weights."""
        from transformers import GenerationConfig

        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        tokenizer = load_tokenizer(model_name, trust_remote_code=trust_remote_code)
        self.model = load_causal_lm(
            model_name, trust_remote_code=trust_remote_code, dtype=getattr(torch, dtype)
        )
        self.model.to(self.device).eval()
        self.eos_ids = eos_token_ids(resolve_model_path(model_name), trust_remote_code)
        self.pad_id = tokenizer.pad_token_id
        self.model.generation_config = GenerationConfig(
            bos_token_id=self.model.generation_config.bos_token_id,
            eos_token_id=self.eos_ids,
            pad_token_id=self.pad_id,
        )
        if lora is not None:
            self.model = add_lora(self.model, lora, "CAUSAL_LM").eval()
        self.lora = lora is not None
        self._rng = random.Random(seed)
        self._version = 0

    @property
    def version(self) -> int:
        return self._version

    def generate(self, prompt_ids: list[list[int]], params: SamplingParams) -> GenerationBatch:
        """Rows = prompts repeated ``params.n`` times; see the module docstring for logprobs."""
        check_prompts(prompt_ids)
        start = time.perf_counter()
        rows = [list(prompt) for prompt in prompt_ids for _ in range(params.n)]
        tokens, logprobs = self._sample(rows, params)
        responses, values, reasons = [], [], []
        for row_tokens, row_logprobs in zip(tokens, logprobs, strict=True):
            stop = first_stop(row_tokens, self.eos_ids) if params.stop_on_eos else None
            end = len(row_tokens) if stop is None else stop + 1
            responses.append(row_tokens[:end])
            values.append(row_logprobs[:end])
            reasons.append("length" if stop is None else "stop")
        return GenerationBatch(
            prompt_ids=rows,
            response_ids=responses,
            response_logprobs=values,
            finish_reasons=reasons,
            version=self._version,
            engine_s=time.perf_counter() - start,
        )

    def _sample(
        self, rows: list[list[int]], params: SamplingParams
    ) -> tuple[list[list[int]], list[list[float]]]:
        """One ``generate`` over the left-padded rows: new tokens [B][T] and their logprobs
        [B][T], T = steps run (pad after a row's EOS). Tensors die here, inside the timing."""
        from transformers import GenerationConfig

        input_ids, attention_mask = left_pad(rows, self.pad_id)
        sampling = (
            {"do_sample": False}
            if params.greedy
            else {
                "do_sample": True,
                "temperature": params.temperature,
                "top_k": params.top_k,
                "top_p": params.top_p,
            }
        )
        config = GenerationConfig(
            max_new_tokens=params.max_new_tokens,
            eos_token_id=self.eos_ids if params.stop_on_eos else [],
            pad_token_id=self.pad_id,
            return_dict_in_generate=True,
            output_logits=True,
            **sampling,
        )
        seed = self._rng.randrange(2**63) if params.seed is None else params.seed
        with torch.inference_mode(), torch.random.fork_rng(devices=self._rng_devices()):
            torch.manual_seed(seed)
            out = self.model.generate(
                input_ids=input_ids.to(self.device),
                attention_mask=attention_mask.to(self.device),
                generation_config=config,
            )
            tokens = out.sequences[:, input_ids.shape[1] :]  # [B, T]
            logprobs = torch.stack(
                [
                    torch.log_softmax(step.float() / params.logprob_temperature, dim=-1)
                    .gather(1, tokens[:, t : t + 1])
                    .squeeze(1)
                    for t, step in enumerate(out.logits)
                ],
                dim=1,
            )  # [B, T]
        return tokens.tolist(), logprobs.tolist()

    def load_weights(self, state_dict: Mapping[str, torch.Tensor], version: int) -> None:
        """``load_state_dict(strict=True)``: every parameter name must match the model's; with
        LoRA the adapter's tensors, each onto an adapter parameter."""
        with torch.no_grad():
            if self.lora:
                load_adapter_state(self.model, state_dict)
            else:
                self.model.load_state_dict(state_dict, strict=True)
        self._version = version

    def fingerprint(self) -> Fingerprint:
        """Of the model's own weights read back after loading (with LoRA, its adapter's)."""
        held = adapter_state_dict(self.model) if self.lora else self.model.state_dict()
        return weights_fingerprint(held)

    def _rng_devices(self) -> list[torch.device]:
        return [self.device] if self.device.type == "cuda" else []


def left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token lists: ``input_ids`` [B, P] int64 and ``attention_mask`` [B, P] (1 = real)."""
    width = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.int64)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.int64)
    for i, row in enumerate(rows):
        input_ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.int64)
        attention_mask[i, width - len(row) :] = 1
    return input_ids, attention_mask


def first_stop(tokens: Sequence[int], eos_ids: Sequence[int]) -> int | None:
    """Index of the first token of ``tokens`` in ``eos_ids``, or None."""
    stops = set(eos_ids)
    return next((i for i, token in enumerate(tokens) if token in stops), None)
