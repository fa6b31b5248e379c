"""The engine protocol: sampling parameters in, token ids and per-token logprobs out.

An engine turns a batch of tokenized prompts into responses. It never sees text, never imports
Ray, and holds one model whose weights can be replaced (``load_weights``) under a version number.

Logprob semantics (both engines, checked against the learner by the integration tests)::

    response_logprobs[i][t] = log_softmax(logits_t / T)[y_t]

with ``logits_t`` the model's raw logits for response position ``t``, ``y_t`` the sampled token
and ``T`` the sampling temperature (``T = 1`` for greedy, ``temperature == 0``). That is the
quantity the learner recomputes: no top-k / top-p renormalisation enters it.

Output order is prompt-major: with ``n`` samples per prompt, rows are prompt 0 sample 0..n-1,
prompt 1 sample 0..n-1, and so on; ``prompt_ids`` repeats each prompt once per sample so that
every row is a complete (prompt, response) pair.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import torch

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class SamplingParams:
    """How to sample. ``temperature == 0`` is greedy (then ``n == 1``); ``top_k == 0`` and
    ``top_p == 1`` are off.

    ``n`` samples per prompt (group baselines). ``stop_on_eos`` ends a response at the model's EOS
    token (kept as the response's last token); when False every response runs to
    ``max_new_tokens``. ``seed`` makes a call reproducible: the same prompts, params and actor
    count give the same tokens (per-prompt seeds ``seed + i * n`` in vLLM; one seeded generator
    per call in transformers).
    """

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 32
    n: int = 1
    stop_on_eos: bool = True
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.temperature == 0 and self.n > 1:
            raise ValueError("greedy sampling gives n identical samples; use n=1")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @property
    def logprob_temperature(self) -> float:
        """The ``T`` in ``log_softmax(logits / T)``: the temperature, or 1 when greedy."""
        return 1.0 if self.greedy else self.temperature

    @property
    def truncated(self) -> bool:
        """True when top-k or top-p cut the distribution that tokens are drawn from."""
        return self.top_k > 0 or self.top_p < 1.0

    def for_shard(self, first_prompt: int) -> SamplingParams:
        """The params for a shard starting at prompt ``first_prompt`` of the whole batch.

        Offsets the seed by ``first_prompt * n`` so per-prompt seeds match an unsharded call.
        """
        if self.seed is None:
            return self
        return dataclasses.replace(self, seed=self.seed + first_prompt * self.n)


@dataclass
class ShardTiming:
    """One actor's share of a pool call. Seconds; ``call_s`` is driver wall time incl. retries."""

    actor: int
    prompts: int
    samples: int
    response_tokens: int
    engine_s: float
    weight_load_s: float
    call_s: float
    retries: int


@dataclass
class GenerationBatch:
    """Responses for a batch of prompts; every list has one entry per row (B = prompts * n).

    prompt_ids[i]: the prompt of row i; response_ids[i]: its generated tokens, EOS included when
    it stopped there; response_logprobs[i][t]: ``log_softmax(logits_t / T)[response_ids[i][t]]``;
    finish_reasons[i]: "stop" (ended on EOS) or "length" (hit max_new_tokens). ``version`` is the
    weights version that produced the batch, ``engine_s`` the engine's generation time, and
    ``timings`` (pool calls only) one entry per actor shard.
    """

    prompt_ids: list[list[int]]
    response_ids: list[list[int]]
    response_logprobs: list[list[float]]
    finish_reasons: list[FinishReason]
    version: int = 0
    engine_s: float = 0.0
    timings: list[ShardTiming] = field(default_factory=list)

    def __post_init__(self) -> None:
        rows = (self.prompt_ids, self.response_ids, self.response_logprobs, self.finish_reasons)
        if len({len(column) for column in rows}) > 1:
            raise ValueError("GenerationBatch lists differ in length")
        for ids, logprobs in zip(self.response_ids, self.response_logprobs, strict=True):
            if len(ids) != len(logprobs):
                raise ValueError("a response and its logprobs differ in length")

    def __len__(self) -> int:
        return len(self.response_ids)

    @property
    def num_response_tokens(self) -> int:
        return sum(len(ids) for ids in self.response_ids)

    def to_tensors(self, pad_id: int = 0) -> dict[str, torch.Tensor]:
        """Right-padded tensors, T = longest response.

        Returns ``response_ids`` [B, T] int64 (``pad_id`` after the end), ``response_mask``
        [B, T] bool (True on generated tokens, EOS included), ``logprobs`` [B, T] float32
        (0 after the end).
        """
        rows, width = len(self), max((len(ids) for ids in self.response_ids), default=0)
        ids = torch.full((rows, width), pad_id, dtype=torch.int64)
        mask = torch.zeros((rows, width), dtype=torch.bool)
        logprobs = torch.zeros((rows, width), dtype=torch.float32)
        for row, (tokens, values) in enumerate(
            zip(self.response_ids, self.response_logprobs, strict=True)
        ):
            ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.int64)
            mask[row, : len(tokens)] = True
            logprobs[row, : len(values)] = torch.tensor(values, dtype=torch.float32)
        return {"response_ids": ids, "response_mask": mask, "logprobs": logprobs}

    @classmethod
    def concat(cls, batches: Sequence[GenerationBatch]) -> GenerationBatch:
        """Rows of ``batches`` in order; they must share one version. Timings are concatenated."""
        versions = {batch.version for batch in batches}
        if len(versions) > 1:
            raise ValueError(f"cannot concatenate batches of weight versions {sorted(versions)}")
        return cls(
            prompt_ids=[row for batch in batches for row in batch.prompt_ids],
            response_ids=[row for batch in batches for row in batch.response_ids],
            response_logprobs=[row for batch in batches for row in batch.response_logprobs],
            finish_reasons=[reason for batch in batches for reason in batch.finish_reasons],
            version=versions.pop() if versions else 0,
            engine_s=max((batch.engine_s for batch in batches), default=0.0),
            timings=[timing for batch in batches for timing in batch.timings],
        )


class Engine(Protocol):
    """What RolloutActor drives. Implementations: ``HFEngine``, ``VLLMEngine``."""

    @property
    def version(self) -> int:
        """Weights version: 0 for the weights loaded at start, then what ``load_weights`` set."""
        ...

    def generate(self, prompt_ids: list[list[int]], params: SamplingParams) -> GenerationBatch:
        """Sample ``params.n`` responses per prompt (prompt-major rows) with their logprobs."""
        ...

    def load_weights(self, state_dict: Mapping[str, torch.Tensor], version: int) -> None:
        """Replace the model's weights (HF parameter names, full tensors) and set ``version``."""
        ...

    def fingerprint(self) -> dict[str, tuple[float, float, int, str]]:
        """``engines.weights.weights_fingerprint`` of the weights the engine holds."""
        ...


def check_prompts(prompt_ids: Sequence[Sequence[int]]) -> None:
    """Engines need at least one prompt and at least one token per prompt."""
    if not prompt_ids:
        raise ValueError("no prompts to generate from")
    empty = [i for i, prompt in enumerate(prompt_ids) if len(prompt) == 0]
    if empty:
        raise ValueError(f"prompts {empty[:5]} are empty; every prompt needs at least one token")


def eos_token_ids(model_path: str, trust_remote_code: bool = False) -> list[int]:
    """The ids that end a response: the tokenizer's EOS plus the generation config's EOS ids.

    The same set vLLM stops on by default; both engines use this function so they agree.
    """
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=trust_remote_code)
    try:
        generation = GenerationConfig.from_pretrained(model_path)
    except OSError:
        generation = GenerationConfig.from_model_config(
            AutoConfig.from_pretrained(model_path, trust_remote_code=trust_remote_code)
        )
    configured = generation.eos_token_id
    ids = [] if tokenizer.eos_token_id is None else [tokenizer.eos_token_id]
    ids += [configured] if isinstance(configured, int) else list(configured or [])
    if not ids:
        raise ValueError(f"{model_path}: no EOS token in the tokenizer or generation config")
    return list(dict.fromkeys(ids))
