"""The frozen reference model as its own Ray actor (``--reference_placement actor``, and the
fluency signal of ``ray-adlf score``).

It keeps the reference out of the learner's memory: rank 0 of the PPO learner sends the round's
(prompt, response) rows and gets back ``log_softmax(logits / T)[token]`` for every response
token, the same quantity the colocated reference computes (``models.policy.response_forward``).
"""

from __future__ import annotations

import ray
import torch

from ray_adlf.actors.group import ActorGroup
from ray_adlf.models.loading import load_causal_lm, load_tokenizer
from ray_adlf.models.policy import pack_sequences, response_forward


@ray.remote
class ReferenceActor:
    """Reference logprobs of response tokens, batched."""

    def __init__(self, model_path: str, trust_remote_code: bool, batch_size: int) -> None:
        self.model = load_causal_lm(model_path, trust_remote_code).eval()
        self.pad_id = load_tokenizer(model_path, trust_remote_code).pad_token_id
        self.batch_size = batch_size

    def ready(self) -> bool:
        return True

    @torch.no_grad()
    def logprobs(
        self, prompt_ids: list[list[int]], response_ids: list[list[int]], temperature: float
    ) -> list[list[float]]:
        """Per response token logprobs, one list per row (its response's length)."""
        rows: list[list[float]] = []
        for start in range(0, len(prompt_ids), self.batch_size):
            prompts = prompt_ids[start : start + self.batch_size]
            responses = response_ids[start : start + self.batch_size]
            batch = pack_sequences(prompts, responses, self.pad_id)
            out = response_forward(self.model, batch, temperature, with_values=False)["logprobs"]
            rows += [out[i, : len(r)].tolist() for i, r in enumerate(responses)]
        return rows


class ReferenceActorPool:
    """One ReferenceActor behind a blocking ``logprobs`` call."""

    def __init__(
        self,
        model_path: str,
        trust_remote_code: bool,
        num_cpus: float,
        batch_size: int = 16,
        num_threads: int = 0,
    ) -> None:
        self.group = ActorGroup(
            ReferenceActor,
            [(model_path, trust_remote_code, batch_size)],
            num_cpus=num_cpus,
            num_threads=num_threads,
        )

    def logprobs(
        self, prompt_ids: list[list[int]], response_ids: list[list[int]], temperature: float
    ) -> list[list[float]]:
        [actor] = self.group.actors
        return ray.get(actor.logprobs.remote(prompt_ids, response_ids, temperature))

    def shutdown(self) -> None:
        self.group.shutdown()
