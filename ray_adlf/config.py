"""The run configuration: a tree of dataclasses, a YAML dump of it, and flat CLI flags.

Every leaf field has a globally unique name, and that name is its CLI flag: ``sft.sft_epochs``
is ``--sft_epochs``. Resolution order: dataclass defaults, then ``--config FILE.yaml`` (a dump of
this tree, possibly partial), then the flags given on the command line. YAML is never a
composition language: it holds values, nothing else (no anchors or aliases, at most
``MAX_YAML_BYTES`` and ``MAX_YAML_DEPTH`` levels, checked before anything is built from it).

Each numeric field declares its range next to it (``_flag(..., valid=Range(...))``); ``validate``
checks every number against its declaration (and that it is finite), then the combinations of
fields that contradict each other. Every failure names the flag and the reason.

Resources (``resources`` section): a CPU count of 0 means "derive it from the cluster"
(``cpu_plan.py`` splits the CPUs Ray reports between the learner and the actors).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

TokenFormat = Literal["standard", "role_markers", "turn_markers"]
Scheduler = Literal["linear", "cosine", "cosine_with_restarts", "constant"]
MAX_YAML_BYTES = 1 << 20
MAX_YAML_DEPTH = 4  # document -> section -> key -> value
MAX_SEED = 2**32
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


@dataclass(frozen=True)
class Range:
    """An interval of accepted values, ``[low, high]`` with open ends where asked."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def __str__(self) -> str:
        if self.high == math.inf:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"in {left}{self.low:g}, {self.high:g}{right}"


POSITIVE = Range(0.0, low_open=True)
NON_NEGATIVE = Range(0.0)
AT_LEAST_ONE = Range(1)
FRACTION = Range(0.0, 1.0)
SCORE = Range(0.0, 5.0)


def _flag(default: Any, help: str, valid: Range | None = None) -> Any:
    return field(default=default, metadata={"help": help, "valid": valid})


@dataclass
class DataConfig:
    data_path: str = _flag("sample", "JSONL(.gz) of scored conversations; 'sample' = bundled set")
    eval_fraction: float = _flag(
        0.1, "fraction of rows held out for evaluation", Range(0.0, 1.0, high_open=True)
    )
    lenient: bool = _flag(False, "skip bad rows (within --max_bad_fraction) instead of stopping")
    max_bad_fraction: float = _flag(
        0.01, "lenient mode: largest tolerated fraction of bad rows", FRACTION
    )
    max_line_bytes: int = _flag(1 << 20, "longest accepted JSONL line, in bytes", AT_LEAST_ONE)
    max_total_bytes: int = _flag(
        2 << 30, "most bytes read from a data file (after decompression)", AT_LEAST_ONE
    )
    max_rows: int = _flag(10_000_000, "most lines read from a data file", AT_LEAST_ONE)
    token_format: TokenFormat = _flag("standard", "how conversations are rendered to text")
    max_seq_length: int = _flag(
        512, "tokens per training sequence; longer ones are truncated", Range(2)
    )
    use_curriculum: bool = _flag(False, "order training data easy to hard with a pacing schedule")
    curriculum_pacing: Literal["linear", "root", "step"] = _flag("linear", "curriculum pacing")
    curriculum_start_fraction: float = _flag(
        0.3, "share of the easiest data available at start", Range(0.0, 1.0, low_open=True)
    )
    curriculum_score_weight: float = _flag(0.5, "weight of score vs length in difficulty", FRACTION)
    use_decision_transformer: bool = _flag(False, "condition training on the record's score")
    target_score: float = _flag(
        5.0, "score that generation is conditioned on (decision mode)", SCORE
    )


@dataclass
class ModelConfig:
    model_name: str = _flag("tiny", "local path, hub name, or 'tiny' (bundled offline model)")
    trust_remote_code: bool = _flag(False, "allow model code from the model repository")
    use_lora: bool = _flag(False, "train LoRA adapters (PEFT) instead of every weight")
    lora_r: int = _flag(8, "LoRA rank r", AT_LEAST_ONE)
    lora_alpha: float = _flag(16.0, "LoRA scale: W + (alpha / r) * B A", POSITIVE)
    lora_dropout: float = _flag(
        0.0, "dropout on the LoRA branch's input", Range(0.0, 1.0, high_open=True)
    )
    lora_target_modules: str = _flag(
        "all-linear", "modules LoRA adapts: all-linear, or names such as q_proj,v_proj"
    )
    merge_lora: bool = _flag(
        False, "with --use_lora, also write merged weights that load with from_pretrained"
    )


@dataclass
class SFTConfig:
    run_sft: bool = _flag(False, "run supervised fine-tuning")
    sft_epochs: int = _flag(3, "SFT epochs", AT_LEAST_ONE)
    sft_batch_size: int = _flag(
        8, "SFT examples per optimizer micro-batch, per worker", AT_LEAST_ONE
    )
    sft_learning_rate: float = _flag(5e-5, "SFT peak learning rate", POSITIVE)
    gradient_accumulation_steps: int = _flag(1, "micro-batches per optimizer step", AT_LEAST_ONE)
    scheduler: Scheduler = _flag("linear", "learning-rate schedule after warmup")
    cosine_cycles: int = _flag(1, "cycles of cosine_with_restarts", AT_LEAST_ONE)
    warmup_ratio: float = _flag(
        0.05, "fraction of steps spent warming up", Range(0.0, 1.0, high_open=True)
    )
    weight_decay: float = _flag(0.0, "AdamW weight decay", NON_NEGATIVE)
    max_grad_norm: float = _flag(1.0, "gradient clipping norm (0 = off)", NON_NEGATIVE)
    use_contrastive: bool = _flag(False, "add an InfoNCE loss over pooled response states")
    contrastive_temp: float = _flag(0.1, "InfoNCE temperature", POSITIVE)
    contrastive_weight: float = _flag(0.1, "weight of the InfoNCE loss", NON_NEGATIVE)
    contrastive_threshold: float = _flag(
        3.5, "scores at or above this are 'high' (positives)", SCORE
    )
    use_self_critique: bool = _flag(False, "also learn to write the critique (score_reason)")
    critique_weight: float = _flag(0.5, "weight of the critique tokens' loss", NON_NEGATIVE)


@dataclass
class RewardModelConfig:
    run_reward_model: bool = _flag(False, "train the reward model on meta_eval_score")
    rm_epochs: int = _flag(3, "reward-model epochs", AT_LEAST_ONE)
    rm_batch_size: int = _flag(8, "reward-model batch size per worker", AT_LEAST_ONE)
    rm_learning_rate: float = _flag(5e-5, "reward-model learning rate", POSITIVE)
    rm_init: Literal["sft", "base"] = _flag("sft", "start from the SFT output or the base model")
    reward_model_path: str | None = _flag(None, "use this trained reward model instead")


@dataclass
class RolloutConfig:
    rollout_engine: Literal["vllm", "hf", "auto"] = _flag("auto", "generation engine")
    temperature: float = _flag(
        1.0, "sampling temperature (also applied in the learner)", Range(0.0, 100.0, low_open=True)
    )
    top_p: float = _flag(1.0, "nucleus sampling", Range(0.0, 1.0, low_open=True))
    top_k: int = _flag(0, "top-k sampling (0 = off)", NON_NEGATIVE)
    max_new_tokens: int = _flag(32, "response length cap", AT_LEAST_ONE)
    rollout_dtype: Literal["float32", "bfloat16", "float16"] = _flag(
        "float32", "dtype the rollout engines run the policy in"
    )


@dataclass
class RewardConfig:
    adlf_alpha: float = _flag(0.5, "reward = (1 - alpha) * external + alpha * internal", FRACTION)
    use_coherence_reward: bool = _flag(False, "internal: embedding similarity to the context")
    use_length_penalty: bool = _flag(False, "internal: smooth penalty outside a length band")
    length_band_min: int = _flag(8, "length band lower edge, in tokens", NON_NEGATIVE)
    length_band_max: int = _flag(64, "length band upper edge, in tokens", NON_NEGATIVE)
    length_band_width: float = _flag(
        8.0, "tokens outside the band where length score = e^-0.5", POSITIVE
    )
    use_fluency_reward: bool = _flag(True, "internal: reference model log-likelihood")
    use_faithfulness_reward: bool = _flag(False, "internal: agreement with the context")
    use_debate_reward: bool = _flag(False, "internal: score agreed by the critique agents")
    use_multi_objective: bool = _flag(False, "normalise objectives, then weight them")
    quality_weight: float = _flag(
        0.4, "multi-objective weight of the external reward", NON_NEGATIVE
    )
    fluency_weight: float = _flag(0.2, "multi-objective weight of fluency", NON_NEGATIVE)
    faithfulness_weight: float = _flag(0.2, "multi-objective weight of faithfulness", NON_NEGATIVE)
    coherence_weight: float = _flag(0.1, "multi-objective weight of coherence", NON_NEGATIVE)
    length_weight: float = _flag(0.05, "multi-objective weight of the length penalty", NON_NEGATIVE)
    debate_weight: float = _flag(0.05, "multi-objective weight of the debate score", NON_NEGATIVE)
    plugin_weight: float = _flag(
        0.1, "multi-objective weight of the --reward_plugin signal", NON_NEGATIVE
    )
    reward_url_weight: float = _flag(
        0.1, "multi-objective weight of the --reward_url signal", NON_NEGATIVE
    )
    objective_normalization: Literal["running", "rank"] = _flag("running", "per-objective norm")
    normalize_rewards: bool = _flag(False, "whiten final rewards with running statistics")
    reward_clip: float = _flag(0.0, "clip final rewards to [-c, c] (0 = off)", NON_NEGATIVE)
    reward_plugin: str | None = _flag(None, "extra signal: path/to/file.py:function")
    reward_url: str | None = _flag(None, "extra signal: HTTP endpoint (JSON)")
    reward_url_timeout: float = _flag(
        10.0, "seconds per HTTP reward request (whole answer)", Range(0.0, 3600.0, low_open=True)
    )
    reward_url_retries: int = _flag(2, "retries of a failed HTTP reward request", Range(0, 100))
    http_max_response_bytes: int = _flag(
        4 << 20, "largest HTTP answer read from --reward_url or --critic_url", AT_LEAST_ONE
    )
    on_reward_error: Literal["raise", "fallback"] = _flag("raise", "plugin failure policy")
    reward_fallback_value: float = _flag(
        0.5, "plugin/URL signal value after a counted failure", Range(-1e6, 1e6)
    )
    reward_batch_size: int = _flag(
        16, "samples per forward pass of the reward models", AT_LEAST_ONE
    )


@dataclass
class DebateConfig:
    num_critics: int = _flag(3, "CritiqueActor count", AT_LEAST_ONE)
    debate_rounds: int = _flag(2, "debate rounds", AT_LEAST_ONE)
    debate_aggregate: Literal["mean", "median", "trimmed_mean"] = _flag("mean", "last round")
    critic_engine: Literal["policy", "reference", "model", "http"] = _flag("reference", "critic")
    critic_model: str | None = _flag(None, "model for critic_engine=model")
    critic_url: str | None = _flag(None, "OpenAI-compatible base URL for critic_engine=http")
    critique_max_new_tokens: int = _flag(32, "tokens per written critique", AT_LEAST_ONE)
    critic_temperature: float = _flag(
        0.7, "sampling temperature of the critiques (0 = greedy)", Range(0.0, 100.0)
    )
    critic_timeout: float = _flag(
        30.0,
        "seconds per request to --critic_url (whole answer)",
        Range(0.0, 3600.0, low_open=True),
    )
    critic_retries: int = _flag(1, "retries of a failed --critic_url request", Range(0, 100))


@dataclass
class PPOConfig:
    run_rlhf: bool = _flag(False, "run RLHF (PPO) with ADLF rewards")
    rl_rounds: int = _flag(20, "PPO rounds (generate, score, learn, sync)", AT_LEAST_ONE)
    ppo_epochs: int = _flag(2, "passes over each round's batch", AT_LEAST_ONE)
    ppo_batch_size: int = _flag(16, "prompts per round", AT_LEAST_ONE)
    ppo_minibatch_size: int = _flag(8, "sequences per PPO minibatch", AT_LEAST_ONE)
    ppo_learning_rate: float = _flag(1e-5, "policy (and value) learning rate", POSITIVE)
    advantage: Literal["gae", "grpo", "rloo", "reinforce_pp", "reinforce_pp_baseline"] = _flag(
        "gae", "advantage estimator (reinforce_pp: REINFORCE++; _baseline: group-mean first)"
    )
    num_samples_per_prompt: int = _flag(
        1, "responses per prompt (group size for the group baselines)", AT_LEAST_ONE
    )
    group_std_normalize: bool = _flag(
        True, "grpo: divide by the group's std (--no-group_std_normalize: Dr. GRPO)"
    )
    gamma: float = _flag(1.0, "discount of GAE and REINFORCE++", FRACTION)
    lam: float = _flag(0.95, "GAE lambda", FRACTION)
    policy_loss: Literal["ppo", "gspo"] = _flag(
        "ppo", "clipped surrogate on the token ratio (ppo) or the sequence ratio (gspo)"
    )
    clip_eps: float = _flag(
        0.2, "ratio clip (the lower one with --clip_eps_high)", Range(0.0, 1.0, low_open=True)
    )
    clip_eps_high: float = _flag(
        0.0, "upper ratio clip, DAPO's clip-higher (0.28 there; 0 = --clip_eps)", Range(0.0, 10.0)
    )
    dual_clip: float = _flag(
        0.0,
        "dual-clip PPO: bound c > 1 of a negative advantage's loss (0 = off)",
        Range(0.0, 100.0),
    )
    loss_agg: Literal[
        "token_mean", "seq_mean_token_mean", "seq_mean_token_sum", "seq_mean_token_sum_norm"
    ] = _flag(
        "token_mean",
        "loss aggregation as veRL names it (seq_mean_token_sum_norm: Dr. GRPO's constant "
        "--max_new_tokens normaliser)",
    )
    dynamic_sampling: bool = _flag(
        False, "DAPO: drop prompt groups whose rewards are all equal and sample more prompts"
    )
    dynamic_sampling_max_batches: int = _flag(
        3, "dynamic sampling: batches of prompts sampled at most per round", AT_LEAST_ONE
    )
    overlong_buffer: int = _flag(
        0,
        "DAPO overlong shaping: the last N tokens before --max_new_tokens where a penalty "
        "ramps to --overlong_penalty (0 = off)",
        NON_NEGATIVE,
    )
    overlong_penalty: float = _flag(1.0, "overlong shaping: the penalty at the cap", NON_NEGATIVE)
    tis_cap: float = _flag(
        2.0,
        "truncated importance sampling: cap of exp(learner old - engine logprob) per token, "
        "which corrects policy lag and engine numerics (0 = off)",
        NON_NEGATIVE,
    )
    async_rollout: bool = _flag(
        False, "generate the next rounds while the learner trains (lag <= --max_staleness)"
    )
    max_staleness: int = _flag(
        1, "async: policy versions a trained sample may lag the learner", AT_LEAST_ONE
    )
    vf_coef: float = _flag(0.1, "value loss weight", NON_NEGATIVE)
    value_clip_eps: float = _flag(0.2, "value clip", POSITIVE)
    entropy_coef: float = _flag(0.0, "entropy bonus weight", NON_NEGATIVE)
    kl_estimator: Literal["k1", "k2", "k3"] = _flag("k1", "per-token KL estimator")
    init_kl_coef: float = _flag(0.05, "initial KL penalty coefficient beta", NON_NEGATIVE)
    use_dynamic_kl: bool = _flag(False, "adapt beta toward --kl_target (Ziegler et al.)")
    kl_target: float = _flag(6.0, "target KL per sequence for the adaptive controller", POSITIVE)
    kl_horizon: int = _flag(10000, "adaptive controller horizon, in samples", AT_LEAST_ONE)
    kl_in_loss: bool = _flag(False, "KL as a loss term instead of a reward penalty")
    ppo_max_grad_norm: float = _flag(1.0, "PPO gradient clipping norm (0 = off)", NON_NEGATIVE)
    ppo_lr_schedule: Literal["constant", "linear", "cosine"] = _flag(
        "constant", "PPO learning-rate schedule over all rounds' optimizer steps"
    )
    critic_mode: Literal["shared", "separate"] = _flag("shared", "value head placement")
    reference_placement: Literal["colocated", "actor"] = _flag("colocated", "reference model")
    eval_every: int = _flag(
        0, "rounds between held-out evaluations (0 = off; on: also before round 1)", NON_NEGATIVE
    )
    eval_prompts: int = _flag(
        32, "held-out prompts per evaluation (greedy responses)", AT_LEAST_ONE
    )
    eval_reward_model_path: str | None = _flag(
        None, "evaluation reward model (trained on data disjoint from the training one's)"
    )
    kl_budget: float = _flag(
        10.0, "evaluation: KL per sequence allowed before the penalty", NON_NEGATIVE
    )
    kl_budget_penalty: float = _flag(
        0.1, "evaluation: objective lost per unit of KL over budget", NON_NEGATIVE
    )


@dataclass
class ResourcesConfig:
    num_workers: int = _flag(1, "Ray Train workers (learner ranks)", AT_LEAST_ONE)
    use_gpu: bool = _flag(False, "train on GPUs")
    learner_num_cpus: float = _flag(
        0.0, "CPUs per CPU Ray Train worker (0 = derived from the cluster)", NON_NEGATIVE
    )
    num_rollout_workers: int = _flag(1, "RolloutActor count", AT_LEAST_ONE)
    rollout_num_cpus: float = _flag(
        0.0, "CPUs per RolloutActor (0 = derived from the cluster)", NON_NEGATIVE
    )
    rollout_num_gpus: float = _flag(0.0, "GPUs per RolloutActor", NON_NEGATIVE)
    tensor_parallel_size: int = _flag(1, "vLLM tensor parallel size (GPU)", AT_LEAST_ONE)
    num_reward_workers: int = _flag(1, "RewardActor count", AT_LEAST_ONE)
    reward_num_cpus: float = _flag(
        0.0, "CPUs per RewardActor (0 = derived from the cluster)", NON_NEGATIVE
    )
    critic_num_cpus: float = _flag(
        0.0, "CPUs per CritiqueActor (0 = derived from the cluster)", NON_NEGATIVE
    )
    actor_max_restarts: int = _flag(
        2, "Ray restarts of each rollout, reward or critique actor that dies", NON_NEGATIVE
    )
    learner_strategy: Literal["ddp", "fsdp"] = _flag(
        "ddp",
        "RL learner: every rank holds the whole model (DDP), or 1/world of it (FSDP2)",
    )
    weight_sync: Literal["object_store", "collective"] = _flag(
        "object_store",
        "how the learner's weights reach the engines: one object in Ray's object store, or a "
        "gloo/NCCL broadcast in buckets",
    )


@dataclass
class RunConfig:
    output_dir: str = _flag("outputs/run", "where models, reports and checkpoints go")
    run_name: str | None = _flag(None, "run name, a plain name (default: output_dir's name)")
    seed: int = _flag(0, "global seed", Range(0, MAX_SEED, high_open=True))
    fp16: bool = _flag(False, "fp16 mixed precision (GPU only)")
    bf16: bool = _flag(False, "bf16 autocast where the device supports it")
    use_wandb: bool = _flag(False, "log to Weights & Biases (offline without a key)")
    wandb_project: str = _flag("ray-adlf", "W&B project")
    resume: bool = _flag(False, "continue the run found in output_dir")
    checkpoint_every: int = _flag(
        50, "optimizer steps (or RL rounds) between checkpoints", AT_LEAST_ONE
    )
    keep_checkpoints: int = _flag(2, "checkpoints kept", AT_LEAST_ONE)
    max_failures: int = _flag(
        1, "worker failures tolerated (restart from last checkpoint)", NON_NEGATIVE
    )
    stop_after_steps: int = _flag(
        0,
        "end this session after N optimizer steps with a checkpoint (0 = run to the end); "
        "the same command (or --resume) continues",
        NON_NEGATIVE,
    )
    ledger_every: int = _flag(
        1,
        "RL: record the samples of round 1, every N-th round after it and the last in "
        "<output_dir>/rollouts/ (0 = no ledger)",
        NON_NEGATIVE,
    )
    ledger_max_chars: int = _flag(
        2000, "characters kept of each prompt, response and critique in the ledger", AT_LEAST_ONE
    )


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    reward_model: RewardModelConfig = field(default_factory=RewardModelConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    rewards: RewardConfig = field(default_factory=RewardConfig)
    debate: DebateConfig = field(default_factory=DebateConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    run: RunConfig = field(default_factory=RunConfig)


class ConfigError(ValueError):
    """A bad config value, key or file; the message names the flag or key."""


@dataclass(frozen=True)
class Leaf:
    """One config field: its section, dataclass field, resolved type and declared range."""

    section: str
    field: dataclasses.Field
    hint: Any

    @property
    def valid(self) -> Range | None:
        return self.field.metadata["valid"]


def leaf_fields() -> dict[str, Leaf]:
    """Map flag name -> Leaf, in declaration order."""
    leaves: dict[str, Leaf] = {}
    for section in dataclasses.fields(Config):
        section_type = typing.get_type_hints(Config)[section.name]
        hints = typing.get_type_hints(section_type)
        for leaf in dataclasses.fields(section_type):
            leaves[leaf.name] = Leaf(section.name, leaf, hints[leaf.name])
    return leaves


def _coerce(flag: str, value: Any, hint: Any) -> Any:
    """Convert ``value`` (from YAML or a CLI string) to ``hint``; raise ConfigError if it can't."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        inner = [a for a in args if a is not type(None)][0]
        return _coerce(flag, value, inner)
    if typing.get_origin(hint) is Literal:
        if value not in args:
            raise ConfigError(f"--{flag}: {value!r} is not one of {', '.join(map(str, args))}")
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        text = str(value).lower()
        if text in ("true", "1", "yes"):
            return True
        if text in ("false", "0", "no"):
            return False
        raise ConfigError(f"--{flag}: {value!r} is not a boolean")
    if hint in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"--{flag}: expected a number, got {type(value).__name__}")
        try:
            return hint(value) if hint is float or isinstance(value, int) else int(str(value))
        except (OverflowError, ValueError):
            raise ConfigError(
                f"--{flag}: {str(value)[:40]!r} is not a valid {hint.__name__}"
            ) from None
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"--{flag}: expected a string, got {type(value).__name__}")
        return value
    raise ConfigError(f"--{flag}: unsupported type {hint}")


def _require(ok: bool, flag: str, reason: str) -> None:
    if not ok:
        raise ConfigError(f"--{flag}: {reason}")


def check_ranges(cfg: Config) -> None:
    """Every number finite and inside the range its field declares."""
    for flag, leaf in leaf_fields().items():
        value = getattr(getattr(cfg, leaf.section), flag)
        if leaf.hint not in (int, float):
            continue
        _require(math.isfinite(value), flag, f"must be a finite number, got {value}")
        if leaf.valid is not None:
            _require(value in leaf.valid, flag, f"must be {leaf.valid}, got {value:g}")


def _check_url(flag: str, url: str) -> None:
    """The HTTP clients' own URL check (http/https, a host), credentials redacted."""
    from ray_adlf.http_json import HTTPJSONError, parse_endpoint

    try:
        parse_endpoint(url)
    except HTTPJSONError as err:
        raise ConfigError(f"--{flag}: {err}") from None


def objective_weights(cfg: Config) -> dict[str, float]:
    """The multi-objective weight of every objective that is on (``--flag`` -> weight)."""
    from ray_adlf.rewards.catalog import enabled_signals

    return {
        signal.weight_flag: signal.weight(cfg.rewards) for signal in enabled_signals(cfg.rewards)
    }


def reference_each_round(cfg: Config) -> bool:
    """Whether every RL round runs the reference: a KL penalty, a KL loss term or fluency."""
    return cfg.ppo.kl_in_loss or cfg.ppo.init_kl_coef > 0 or cfg.rewards.use_fluency_reward


def uses_reference(cfg: Config) -> bool:
    """Whether the RL stage needs the reference model at all (a round, or evaluation's KL)."""
    return reference_each_round(cfg) or cfg.ppo.eval_every > 0


GROUP_ADVANTAGES = ("grpo", "rloo", "reinforce_pp_baseline")
GSPO_MAX_CLIP = 0.01  # GSPO's paper clips its sequence ratio at 3e-4 / 4e-4


def check_algorithm(cfg: Config) -> None:
    """The RL algorithm's flags that only make sense together."""
    ppo, model = cfg.ppo, cfg.model
    group = ppo.advantage in GROUP_ADVANTAGES
    if group:
        _require(
            ppo.num_samples_per_prompt >= 2,
            "num_samples_per_prompt",
            f"--advantage {ppo.advantage} needs >= 2 samples per prompt",
        )
    _require(
        ppo.group_std_normalize or ppo.advantage == "grpo",
        "group_std_normalize",
        "only --advantage grpo divides by the group's std",
    )
    _require(ppo.dual_clip == 0 or ppo.dual_clip > 1, "dual_clip", "must be 0 (off) or > 1")
    _require(
        ppo.tis_cap == 0 or ppo.tis_cap >= 1,
        "tis_cap",
        "must be 0 (off) or >= 1 (a cap under 1 would shrink every token's weight)",
    )
    _require(
        ppo.dual_clip == 0 or ppo.policy_loss == "ppo",
        "dual_clip",
        "bounds the token-ratio loss; use it with --policy_loss ppo",
    )
    if ppo.policy_loss == "gspo":
        _require(
            max(ppo.clip_eps, ppo.clip_eps_high) <= GSPO_MAX_CLIP,
            "clip_eps",
            f"--policy_loss gspo clips a sequence ratio (a geometric mean of token ratios), "
            f"whose range is far narrower than PPO's: at most {GSPO_MAX_CLIP} here, the paper "
            "uses --clip_eps 3e-4 --clip_eps_high 4e-4",
        )
    _require(
        not ppo.dynamic_sampling or group,
        "dynamic_sampling",
        "drops groups whose rewards are all equal: it needs a group baseline "
        f"(--advantage {', '.join(GROUP_ADVANTAGES)})",
    )
    _require(
        ppo.overlong_buffer <= cfg.rollout.max_new_tokens,
        "overlong_buffer",
        f"must be <= --max_new_tokens ({cfg.rollout.max_new_tokens})",
    )
    _require(
        not (
            ppo.async_rollout
            and model.use_lora
            and ppo.reference_placement == "colocated"
            and uses_reference(cfg)
        ),
        "async_rollout",
        "with --use_lora the colocated reference is the policy with its adapter off, which the "
        "learner trains while the next rollout needs it; use --reference_placement actor",
    )


def validate(cfg: Config) -> Config:
    """Check every range, then the combinations; return ``cfg`` or raise ConfigError."""
    check_ranges(cfg)
    rollout, rewards, ppo, res = cfg.rollout, cfg.rewards, cfg.ppo, cfg.resources
    _require(
        rewards.length_band_min <= rewards.length_band_max,
        "length_band_max",
        "must be >= --length_band_min",
    )
    _require(
        res.tensor_parallel_size == 1 or res.rollout_num_gpus >= res.tensor_parallel_size,
        "tensor_parallel_size",
        "needs --rollout_num_gpus >= --tensor_parallel_size (GPU only)",
    )
    _require(
        res.tensor_parallel_size == 1 or rollout.rollout_engine != "hf",
        "tensor_parallel_size",
        "the hf engine has no tensor parallelism",
    )
    _require(
        rollout.rollout_engine != "vllm" or (rollout.top_k == 0 and rollout.top_p == 1.0),
        "rollout_engine",
        "vllm cannot return the learner's unrenormalised logprobs under top-k/top-p; "
        "use --top_k 0 --top_p 1 or --rollout_engine hf",
    )
    model = cfg.model
    _require(not model.merge_lora or model.use_lora, "merge_lora", "needs --use_lora")
    _require(
        not (model.use_lora and res.learner_strategy == "fsdp"),
        "learner_strategy",
        "fsdp with --use_lora is not built yet (rank 0's reference pass would need every "
        "rank); use --learner_strategy ddp",
    )
    _require(
        not (cfg.run.fp16 and res.learner_strategy == "fsdp"),
        "fp16",
        "fsdp trains in fp32 or --bf16 here (FSDP2's fp16 needs a sharded loss scaler); use --bf16",
    )
    if model.use_lora:
        _require(
            rollout.rollout_engine != "vllm",
            "use_lora",
            "the vllm engine does not load LoRA adapters here yet; use --rollout_engine hf "
            "(it applies each synced adapter) or auto",
        )
        _require(
            not (
                rewards.use_debate_reward
                and (cfg.debate.critic_engine == "policy" or cfg.sft.use_self_critique)
            ),
            "use_lora",
            "critics on the policy do not take LoRA adapters yet; use --critic_engine "
            "reference (and no --use_self_critique)",
        )
    _require(
        ppo.ppo_batch_size % res.num_workers == 0,
        "ppo_batch_size",
        f"must be a multiple of --num_workers ({res.num_workers}): each rank takes "
        "whole prompt groups",
    )
    check_algorithm(cfg)
    _require(
        not (ppo.kl_in_loss and ppo.kl_estimator == "k1"),
        "kl_in_loss",
        "with --kl_estimator k1 the loss's gradient is zero in expectation (no KL control); "
        "use --kl_estimator k3 (or k2)",
    )
    if cfg.ppo.run_rlhf:
        _require(
            cfg.data.max_seq_length > rollout.max_new_tokens,
            "max_seq_length",
            f"must exceed --max_new_tokens ({rollout.max_new_tokens}): prompts get the rest",
        )
    if rewards.use_multi_objective:
        weights = objective_weights(cfg)
        _require(
            sum(weights.values()) > 0,
            next(iter(weights), "quality_weight"),
            f"every objective that is on has weight 0 ({', '.join(f'--{w}' for w in weights)}): "
            "the reward would always be 0",
        )
    if rewards.reward_plugin is not None:
        _require(":" in rewards.reward_plugin, "reward_plugin", "expected path/to/file.py:function")
    for flag, url in (("reward_url", rewards.reward_url), ("critic_url", cfg.debate.critic_url)):
        if url is not None:
            _check_url(flag, url)
    if cfg.debate.critic_engine == "model":
        _require(bool(cfg.debate.critic_model), "critic_model", "needed by --critic_engine model")
    if cfg.debate.critic_engine == "http":
        _require(bool(cfg.debate.critic_url), "critic_url", "needed by --critic_engine http")
    _require(not (cfg.run.fp16 and cfg.run.bf16), "fp16", "choose one of --fp16 and --bf16")
    _require(
        not cfg.run.fp16 or res.use_gpu,
        "fp16",
        "needs --use_gpu (on CPU use --bf16 or the fp32 default)",
    )
    if cfg.run.run_name is not None:
        _require(
            RUN_NAME.fullmatch(cfg.run.run_name) is not None,
            "run_name",
            f"{cfg.run.run_name!r} is not a plain name (letters, digits, '.', '_', '-'; "
            "no '/', at most 128 characters)",
        )
    return cfg


def to_dict(cfg: Config) -> dict[str, dict[str, Any]]:
    """The config as nested plain data (what ``save_yaml`` writes)."""
    return dataclasses.asdict(cfg)


def from_dict(data: Any, source: str = "config") -> Config:
    """Build a Config from nested data (a full or partial dump); unknown keys are errors."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of sections, got {type(data).__name__}")
    leaves = leaf_fields()
    cfg = Config()
    for section_name, values in data.items():
        if not isinstance(section_name, str) or not hasattr(cfg, section_name):
            raise ConfigError(f"{source}: unknown section {str(section_name)[:60]!r}")
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: section {section_name!r} must be a mapping")
        section = getattr(cfg, section_name)
        for key, value in values.items():
            leaf = leaves.get(key) if isinstance(key, str) else None
            if leaf is None:
                raise ConfigError(f"{source}: unknown key {section_name}.{str(key)[:60]}")
            if leaf.section != section_name:
                raise ConfigError(
                    f"{source}: {section_name}.{key}: {key} belongs in section {leaf.section}"
                )
            setattr(section, key, _coerce(key, value, leaf.hint))
    return cfg


class _ConfigLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses aliases and nesting deeper than ``MAX_YAML_DEPTH``."""

    depth = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        where = f"line {event.start_mark.line + 1}"
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise ConfigError(f"{where}: YAML anchors and aliases are not allowed in a config")
        nested = isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent))
        if nested and self.depth >= MAX_YAML_DEPTH:
            raise ConfigError(f"{where}: nested deeper than {MAX_YAML_DEPTH} levels")
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def load_yaml(path: str | Path) -> Config:
    """Read a YAML dump of the config; errors name the file (size, depth, aliases checked
    before anything is built)."""
    path = Path(path)
    try:
        if not path.is_file():
            raise ConfigError(f"{path}: not a config file (missing, or not a regular file)")
        if path.stat().st_size > MAX_YAML_BYTES:
            raise ConfigError(f"{path}: larger than {MAX_YAML_BYTES} bytes; not a config dump")
        text = path.read_text(encoding="utf-8")
        data = yaml.load(text, Loader=_ConfigLoader) or {}  # noqa: S506 (a SafeLoader)
    except ConfigError as err:
        raise ConfigError(
            str(err) if str(err).startswith(str(path)) else f"{path}: {err}"
        ) from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML: {err.problem or err.context}") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        reason = " ".join(str(err).split())[:300]
        raise ConfigError(f"{path}: cannot read config: {reason}") from None
    return from_dict(data, source=str(path))


def redacted_dict(cfg: Config) -> dict[str, dict[str, Any]]:
    """``to_dict(cfg)`` with credentials removed from its URLs (what is stored or logged)."""
    from ray_adlf.secrets import redact_url

    data = to_dict(cfg)
    for section, key in (("rewards", "reward_url"), ("debate", "critic_url")):
        if data[section][key]:
            data[section][key] = redact_url(data[section][key])
    return data


def save_yaml(cfg: Config, path: str | Path) -> None:
    """Write the resolved config atomically, URLs redacted; ``load_yaml`` reads it back."""
    from ray_adlf.files import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(redacted_dict(cfg), sort_keys=False))


def add_config_flags(
    parser: argparse.ArgumentParser, flags: typing.Collection[str] | None = None
) -> None:
    """Add ``--config`` and one flag per leaf field named in ``flags`` (all when None; the
    others are still set through ``--config``); unset flags stay absent from the result."""
    parser.add_argument("--config", default=argparse.SUPPRESS, help="YAML dump of the config")
    groups: dict[str, argparse._ArgumentGroup] = {}
    for flag, leaf in leaf_fields().items():
        if flags is not None and flag not in flags:
            continue
        group = groups.setdefault(
            leaf.section, parser.add_argument_group(f"{leaf.section} options")
        )
        help_text = f"{leaf.field.metadata['help']} (default: {leaf.field.default})"
        if leaf.hint is bool:
            group.add_argument(
                f"--{flag}",
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=help_text,
            )
        elif typing.get_origin(leaf.hint) is Literal:
            group.add_argument(
                f"--{flag}",
                choices=typing.get_args(leaf.hint),
                default=argparse.SUPPRESS,
                help=help_text,
            )
        else:
            group.add_argument(f"--{flag}", default=argparse.SUPPRESS, help=help_text)


def config_from_args(args: argparse.Namespace) -> Config:
    """Defaults, then ``--config`` YAML, then the explicitly given flags; validated."""
    cfg = load_yaml(args.config) if getattr(args, "config", None) else Config()
    given = vars(args)
    for flag, leaf in leaf_fields().items():
        if flag in given:
            setattr(getattr(cfg, leaf.section), flag, _coerce(flag, given[flag], leaf.hint))
    return validate(cfg)
