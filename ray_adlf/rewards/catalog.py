"""Every reward signal, declared once.

A ``RewardSignal`` names the signal (the key of its part in the reward parts, ``metrics.jsonl``,
the report, the model card and ``ray-adlf score``'s rows), the flag that turns it on, the flag
of its multi-objective weight, and what computes it. The scorer, the combiner, the model card,
the report and Tune read this table; a new signal is one entry here and its compute function.

Pure signals have ``compute(inputs, rewards) -> [N]`` here and run where the batch is (the
round's rank 0, or the ``score`` driver), from ``SignalInputs``:

- ``length``: ``length_score`` of each response's token count;
- ``fluency``: ``fluency_score`` of the reference logprobs of the response tokens (the same
  reference pass the KL uses, at the sampling temperature);
- ``faithfulness``: ``faithfulness_score`` of the response against the context's turns.

The others need a model or a service and are computed where it lives: ``external``,
``coherence``, ``plugin`` and ``http`` by the reward actors (``rewards.scorer``), ``debate`` by
the critics (``actors.critique``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ray_adlf.data.records import Turn
from ray_adlf.rewards.signals import faithfulness_score, fluency_score, length_score

if TYPE_CHECKING:
    from ray_adlf.config import RewardConfig


@dataclass(frozen=True)
class SignalInputs:
    """What the pure signals read for N samples: ``contexts`` [N] (turns), ``responses`` [N]
    (text), ``response_ids`` [N][T_i] and ``reference_logprobs`` [N][T_i] (None without
    fluency)."""

    contexts: Sequence[Sequence[Turn]]
    responses: Sequence[str]
    response_ids: Sequence[Sequence[int]]
    reference_logprobs: Sequence[Sequence[float]] | None = None


def length_part(inputs: SignalInputs, rewards: RewardConfig) -> np.ndarray:
    """``length_score(len(ids))`` per response. -> [N]."""
    band = (rewards.length_band_min, rewards.length_band_max, rewards.length_band_width)
    return np.array([length_score(len(ids), *band) for ids in inputs.response_ids], float)


def fluency_part(inputs: SignalInputs, rewards: RewardConfig) -> np.ndarray:
    """``fluency_score(reference logprobs, ids)`` per response. -> [N]."""
    if inputs.reference_logprobs is None:
        raise ValueError("fluency needs the reference logprobs of the responses")
    pairs = zip(inputs.reference_logprobs, inputs.response_ids)
    return np.array([fluency_score(list(lp), list(ids)) for lp, ids in pairs], float)


def faithfulness_part(inputs: SignalInputs, rewards: RewardConfig) -> np.ndarray:
    """``faithfulness_score(context turns, response)`` per sample. -> [N]."""
    pairs = zip(inputs.contexts, inputs.responses)
    return np.array([faithfulness_score([t.content for t in c], r) for c, r in pairs], float)


@dataclass(frozen=True)
class RewardSignal:
    """One reward signal (module docstring). ``enabled(rewards)`` reads ``enable_flag``."""

    name: str
    enable_flag: str
    weight_flag: str
    computed_by: str
    compute: Callable[[SignalInputs, RewardConfig], np.ndarray] | None = None

    def enabled(self, rewards: RewardConfig) -> bool:
        """On when its flag is set (a switch, a path, a URL); ``external`` when alpha < 1."""
        value = getattr(rewards, self.enable_flag)
        return value < 1.0 if self.name == "external" else bool(value)

    def weight(self, rewards: RewardConfig) -> float:
        return float(getattr(rewards, self.weight_flag))


EXTERNAL = RewardSignal("external", "adlf_alpha", "quality_weight", "the reward model")
INTERNAL: tuple[RewardSignal, ...] = (
    RewardSignal("coherence", "use_coherence_reward", "coherence_weight", "the sentence embedder"),
    RewardSignal("length", "use_length_penalty", "length_weight", "token counts", length_part),
    RewardSignal(
        "fluency", "use_fluency_reward", "fluency_weight", "reference logprobs", fluency_part
    ),
    RewardSignal(
        "faithfulness",
        "use_faithfulness_reward",
        "faithfulness_weight",
        "claims in the context",
        faithfulness_part,
    ),
    RewardSignal("debate", "use_debate_reward", "debate_weight", "the critics"),
    RewardSignal("plugin", "reward_plugin", "plugin_weight", "the --reward_plugin function"),
    RewardSignal("http", "reward_url", "reward_url_weight", "the --reward_url endpoint"),
)
SIGNALS: tuple[RewardSignal, ...] = (EXTERNAL, *INTERNAL)
INTERNAL_SIGNALS: tuple[str, ...] = tuple(signal.name for signal in INTERNAL)
WEIGHT_FLAGS: tuple[str, ...] = tuple(signal.weight_flag for signal in SIGNALS)


def enabled_signals(rewards: RewardConfig) -> list[RewardSignal]:
    """The signals ``rewards`` turns on, in table order."""
    return [signal for signal in SIGNALS if signal.enabled(rewards)]


def pure_parts(inputs: SignalInputs, rewards: RewardConfig) -> dict[str, np.ndarray]:
    """Every enabled pure signal of the batch, ``{name: [N]}``."""
    return {
        signal.name: signal.compute(inputs, rewards)
        for signal in enabled_signals(rewards)
        if signal.compute is not None
    }
