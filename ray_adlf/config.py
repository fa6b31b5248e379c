"""The run configuration: a tree of dataclasses, a YAML dump of it, and flat CLI flags.

Every leaf field has a globally unique name, and that name is its CLI flag: ``sft.sft_epochs``
is ``--sft_epochs``. Resolution order: dataclass defaults, then ``--config FILE.yaml`` (a dump of
this tree, possibly partial), then the flags given on the command line. YAML is never a
composition language: it holds values, nothing else.

Values are checked in ``validate``; every failure names the flag and the reason.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

TokenFormat = Literal["standard", "role_markers", "turn_markers"]
Scheduler = Literal["linear", "cosine", "cosine_with_restarts", "constant"]


def _flag(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass
class DataConfig:
    data_path: str = _flag("sample", "JSONL(.gz) of scored conversations; 'sample' = bundled set")
    eval_fraction: float = _flag(0.1, "fraction of rows held out for evaluation")
    lenient: bool = _flag(False, "skip bad rows (within --max_bad_fraction) instead of stopping")
    max_bad_fraction: float = _flag(0.01, "lenient mode: largest tolerated fraction of bad rows")
    max_line_bytes: int = _flag(1 << 20, "longest accepted JSONL line, in bytes")
    token_format: TokenFormat = _flag("standard", "how conversations are rendered to text")
    max_seq_length: int = _flag(512, "tokens per training sequence; longer ones are truncated")
    use_curriculum: bool = _flag(False, "order training data easy to hard with a pacing schedule")
    curriculum_pacing: Literal["linear", "root", "step"] = _flag("linear", "curriculum pacing")
    curriculum_start_fraction: float = _flag(0.3, "share of the easiest data available at start")
    curriculum_score_weight: float = _flag(0.5, "weight of score vs length in difficulty")
    use_decision_transformer: bool = _flag(False, "condition training on the record's score")
    target_score: float = _flag(5.0, "score that generation is conditioned on (decision mode)")


@dataclass
class ModelConfig:
    model_name: str = _flag("tiny", "local path, hub name, or 'tiny' (bundled offline model)")
    trust_remote_code: bool = _flag(False, "allow model code from the model repository")


@dataclass
class SFTConfig:
    run_sft: bool = _flag(False, "run supervised fine-tuning")
    sft_epochs: int = _flag(3, "SFT epochs")
    sft_batch_size: int = _flag(8, "SFT examples per optimizer micro-batch, per worker")
    sft_learning_rate: float = _flag(5e-5, "SFT peak learning rate")
    gradient_accumulation_steps: int = _flag(1, "micro-batches per optimizer step")
    scheduler: Scheduler = _flag("linear", "learning-rate schedule after warmup")
    cosine_cycles: int = _flag(1, "cycles of cosine_with_restarts")
    warmup_ratio: float = _flag(0.05, "fraction of steps spent warming up")
    weight_decay: float = _flag(0.0, "AdamW weight decay")
    max_grad_norm: float = _flag(1.0, "gradient clipping norm (0 = off)")
    use_contrastive: bool = _flag(False, "add an InfoNCE loss over pooled response states")
    contrastive_temp: float = _flag(0.1, "InfoNCE temperature")
    contrastive_weight: float = _flag(0.1, "weight of the InfoNCE loss")
    contrastive_threshold: float = _flag(3.5, "scores at or above this are 'high' (positives)")
    use_self_critique: bool = _flag(False, "also learn to write the critique (score_reason)")
    critique_weight: float = _flag(0.5, "weight of the critique tokens' loss")


@dataclass
class RewardModelConfig:
    run_reward_model: bool = _flag(False, "train the reward model on meta_eval_score")
    rm_epochs: int = _flag(3, "reward-model epochs")
    rm_batch_size: int = _flag(8, "reward-model batch size per worker")
    rm_learning_rate: float = _flag(5e-5, "reward-model learning rate")
    rm_init: Literal["sft", "base"] = _flag("sft", "start from the SFT output or the base model")
    reward_model_path: str | None = _flag(None, "use this trained reward model instead")


@dataclass
class RolloutConfig:
    rollout_engine: Literal["vllm", "hf", "auto"] = _flag("auto", "generation engine")
    num_rollout_workers: int = _flag(1, "RolloutActor count")
    rollout_num_cpus: float = _flag(0.5, "CPUs per RolloutActor")
    rollout_num_gpus: float = _flag(0.0, "GPUs per RolloutActor")
    tensor_parallel_size: int = _flag(1, "vLLM tensor parallel size (GPU)")
    rollout_max_restarts: int = _flag(2, "Ray restarts of a failed RolloutActor")
    temperature: float = _flag(1.0, "sampling temperature (also applied in the learner)")
    top_p: float = _flag(1.0, "nucleus sampling")
    top_k: int = _flag(0, "top-k sampling (0 = off)")
    max_new_tokens: int = _flag(32, "response length cap")
    rollout_dtype: Literal["float32", "bfloat16", "float16"] = _flag(
        "float32", "dtype the rollout engines run the policy in"
    )


@dataclass
class RewardConfig:
    adlf_alpha: float = _flag(0.5, "reward = (1 - alpha) * external + alpha * internal")
    use_coherence_reward: bool = _flag(False, "internal: embedding similarity to the context")
    use_length_penalty: bool = _flag(False, "internal: smooth penalty outside a length band")
    length_band_min: int = _flag(8, "length band lower edge, in tokens")
    length_band_max: int = _flag(64, "length band upper edge, in tokens")
    length_band_width: float = _flag(8.0, "tokens outside the band where length score = e^-0.5")
    use_fluency_reward: bool = _flag(True, "internal: reference model log-likelihood")
    use_faithfulness_reward: bool = _flag(False, "internal: agreement with the context")
    use_debate_reward: bool = _flag(False, "internal: score agreed by the critique agents")
    use_multi_objective: bool = _flag(False, "normalise objectives, then weight them")
    quality_weight: float = _flag(0.4, "multi-objective weight of the external reward")
    fluency_weight: float = _flag(0.2, "multi-objective weight of fluency")
    faithfulness_weight: float = _flag(0.2, "multi-objective weight of faithfulness")
    coherence_weight: float = _flag(0.1, "multi-objective weight of coherence")
    length_weight: float = _flag(0.05, "multi-objective weight of the length penalty")
    debate_weight: float = _flag(0.05, "multi-objective weight of the debate score")
    plugin_weight: float = _flag(0.1, "multi-objective weight of the --reward_plugin signal")
    reward_url_weight: float = _flag(0.1, "multi-objective weight of the --reward_url signal")
    objective_normalization: Literal["running", "rank"] = _flag("running", "per-objective norm")
    normalize_rewards: bool = _flag(False, "whiten final rewards with running statistics")
    reward_clip: float = _flag(0.0, "clip final rewards to [-c, c] (0 = off)")
    reward_plugin: str | None = _flag(None, "extra signal: path/to/file.py:function")
    reward_url: str | None = _flag(None, "extra signal: HTTP endpoint (JSON)")
    reward_url_timeout: float = _flag(10.0, "seconds per HTTP reward request")
    reward_url_retries: int = _flag(2, "retries of a failed HTTP reward request")
    on_reward_error: Literal["raise", "fallback"] = _flag("raise", "plugin failure policy")
    reward_fallback_value: float = _flag(0.5, "plugin/URL signal value after a counted failure")
    reward_batch_size: int = _flag(16, "samples per forward pass of the reward models")
    num_reward_workers: int = _flag(1, "RewardActor count")
    reward_num_cpus: float = _flag(0.5, "CPUs per RewardActor")


@dataclass
class DebateConfig:
    num_critics: int = _flag(3, "CritiqueActor count")
    debate_rounds: int = _flag(2, "debate rounds")
    debate_aggregate: Literal["mean", "median", "trimmed_mean"] = _flag("mean", "last round")
    critic_engine: Literal["policy", "reference", "model", "http"] = _flag("reference", "critic")
    critic_model: str | None = _flag(None, "model for critic_engine=model")
    critic_url: str | None = _flag(None, "OpenAI-compatible base URL for critic_engine=http")
    critic_num_cpus: float = _flag(0.25, "CPUs per CritiqueActor")
    critique_max_new_tokens: int = _flag(32, "tokens per written critique")
    critic_temperature: float = _flag(0.7, "sampling temperature of the critiques (0 = greedy)")
    critic_timeout: float = _flag(30.0, "seconds per request to --critic_url")
    critic_retries: int = _flag(1, "retries of a failed --critic_url request")


@dataclass
class PPOConfig:
    run_rlhf: bool = _flag(False, "run RLHF (PPO) with ADLF rewards")
    rl_rounds: int = _flag(20, "PPO rounds (generate, score, learn, sync)")
    ppo_epochs: int = _flag(2, "passes over each round's batch")
    ppo_batch_size: int = _flag(16, "prompts per round")
    ppo_minibatch_size: int = _flag(8, "sequences per PPO minibatch")
    ppo_learning_rate: float = _flag(1e-5, "policy (and value) learning rate")
    advantage: Literal["gae", "grpo", "rloo"] = _flag("gae", "advantage estimator")
    num_samples_per_prompt: int = _flag(1, "responses per prompt (group size for grpo/rloo)")
    gamma: float = _flag(1.0, "GAE discount")
    lam: float = _flag(0.95, "GAE lambda")
    clip_eps: float = _flag(0.2, "PPO ratio clip")
    vf_coef: float = _flag(0.1, "value loss weight")
    value_clip_eps: float = _flag(0.2, "value clip")
    entropy_coef: float = _flag(0.0, "entropy bonus weight")
    kl_estimator: Literal["k1", "k2", "k3"] = _flag("k1", "per-token KL estimator")
    init_kl_coef: float = _flag(0.05, "initial KL penalty coefficient beta")
    use_dynamic_kl: bool = _flag(False, "adapt beta toward --kl_target (Ziegler et al.)")
    kl_target: float = _flag(6.0, "target KL per sequence for the adaptive controller")
    kl_horizon: int = _flag(10000, "adaptive controller horizon, in samples")
    kl_in_loss: bool = _flag(False, "KL as a loss term instead of a reward penalty")
    ppo_max_grad_norm: float = _flag(1.0, "PPO gradient clipping norm (0 = off)")
    ppo_lr_schedule: Literal["constant", "linear", "cosine"] = _flag(
        "constant", "PPO learning-rate schedule over all rounds' optimizer steps"
    )
    critic_mode: Literal["shared", "separate"] = _flag("shared", "value head placement")
    reference_placement: Literal["colocated", "actor"] = _flag("colocated", "reference model")
    eval_every: int = _flag(0, "rounds between held-out evaluations (0 = off)")
    eval_prompts: int = _flag(32, "held-out prompts per evaluation (greedy responses)")
    eval_reward_model_path: str | None = _flag(
        None, "evaluation reward model (trained on data disjoint from the training one's)"
    )
    kl_budget: float = _flag(10.0, "evaluation: KL per sequence allowed before the penalty")
    kl_budget_penalty: float = _flag(0.1, "evaluation: objective lost per unit of KL over budget")


@dataclass
class RunConfig:
    output_dir: str = _flag("outputs/run", "where models, reports and checkpoints go")
    run_name: str | None = _flag(None, "run name (default: output_dir's name)")
    seed: int = _flag(0, "global seed")
    num_workers: int = _flag(1, "Ray Train workers")
    learner_num_cpus: float = _flag(
        0.0, "CPUs per CPU Ray Train worker (0 = min(1, cluster CPUs / (2 * num_workers)))"
    )
    use_gpu: bool = _flag(False, "train on GPUs")
    fp16: bool = _flag(False, "fp16 mixed precision (GPU only)")
    bf16: bool = _flag(False, "bf16 autocast where the device supports it")
    use_wandb: bool = _flag(False, "log to Weights & Biases (offline without a key)")
    wandb_project: str = _flag("ray-adlf", "W&B project")
    resume: bool = _flag(False, "continue the run found in output_dir")
    checkpoint_every: int = _flag(50, "optimizer steps (or RL rounds) between checkpoints")
    keep_checkpoints: int = _flag(2, "checkpoints kept")
    max_failures: int = _flag(1, "worker failures tolerated (restart from last checkpoint)")
    stop_after_steps: int = _flag(
        0,
        "end this session after N optimizer steps with a checkpoint (0 = run to the end); "
        "the same command (or --resume) continues",
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
    run: RunConfig = field(default_factory=RunConfig)


class ConfigError(ValueError):
    """A bad config value, key or file; the message names the flag or key."""


def _leaf_fields() -> dict[str, tuple[str, dataclasses.Field, Any]]:
    """Map flag name -> (section name, field, resolved type)."""
    leaves: dict[str, tuple[str, dataclasses.Field, Any]] = {}
    for section in dataclasses.fields(Config):
        section_type = typing.get_type_hints(Config)[section.name]
        hints = typing.get_type_hints(section_type)
        for leaf in dataclasses.fields(section_type):
            leaves[leaf.name] = (section.name, leaf, hints[leaf.name])
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
        if isinstance(value, bool):
            raise ConfigError(f"--{flag}: expected a number, got a boolean")
        try:
            number = hint(value) if hint is float or isinstance(value, int) else int(str(value))
        except (TypeError, ValueError):
            raise ConfigError(f"--{flag}: {value!r} is not a valid {hint.__name__}") from None
        return number
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"--{flag}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"--{flag}: unsupported type {hint}")


def _require(ok: bool, flag: str, reason: str) -> None:
    if not ok:
        raise ConfigError(f"--{flag}: {reason}")


def validate(cfg: Config) -> Config:
    """Check value ranges and combinations; return ``cfg`` or raise ConfigError."""
    for flag, (section, _, hint) in _leaf_fields().items():
        value = getattr(getattr(cfg, section), flag)
        if hint in (int, float) and value is not None:
            _require(value == value, flag, "must be a number, not NaN")
    _require(0.0 <= cfg.rewards.adlf_alpha <= 1.0, "adlf_alpha", "must be in [0, 1]")
    _require(0.0 <= cfg.data.eval_fraction < 1.0, "eval_fraction", "must be in [0, 1)")
    _require(0.0 <= cfg.data.max_bad_fraction <= 1.0, "max_bad_fraction", "must be in [0, 1]")
    _require(0.0 <= cfg.data.target_score <= 5.0, "target_score", "must be in [0, 5]")
    _require(
        0.0 < cfg.data.curriculum_start_fraction <= 1.0,
        "curriculum_start_fraction",
        "must be in (0, 1]",
    )
    _require(
        0.0 <= cfg.data.curriculum_score_weight <= 1.0,
        "curriculum_score_weight",
        "must be in [0, 1]",
    )
    positive_ints = {
        "max_seq_length": cfg.data.max_seq_length,
        "max_line_bytes": cfg.data.max_line_bytes,
        "sft_epochs": cfg.sft.sft_epochs,
        "sft_batch_size": cfg.sft.sft_batch_size,
        "gradient_accumulation_steps": cfg.sft.gradient_accumulation_steps,
        "cosine_cycles": cfg.sft.cosine_cycles,
        "rm_epochs": cfg.reward_model.rm_epochs,
        "rm_batch_size": cfg.reward_model.rm_batch_size,
        "num_rollout_workers": cfg.rollout.num_rollout_workers,
        "tensor_parallel_size": cfg.rollout.tensor_parallel_size,
        "max_new_tokens": cfg.rollout.max_new_tokens,
        "num_reward_workers": cfg.rewards.num_reward_workers,
        "num_critics": cfg.debate.num_critics,
        "critique_max_new_tokens": cfg.debate.critique_max_new_tokens,
        "reward_batch_size": cfg.rewards.reward_batch_size,
        "debate_rounds": cfg.debate.debate_rounds,
        "rl_rounds": cfg.ppo.rl_rounds,
        "ppo_epochs": cfg.ppo.ppo_epochs,
        "ppo_batch_size": cfg.ppo.ppo_batch_size,
        "ppo_minibatch_size": cfg.ppo.ppo_minibatch_size,
        "num_samples_per_prompt": cfg.ppo.num_samples_per_prompt,
        "kl_horizon": cfg.ppo.kl_horizon,
        "num_workers": cfg.run.num_workers,
        "checkpoint_every": cfg.run.checkpoint_every,
        "keep_checkpoints": cfg.run.keep_checkpoints,
    }
    for flag, value in positive_ints.items():
        _require(value >= 1, flag, f"must be >= 1, got {value}")
    positive_floats = {
        "sft_learning_rate": cfg.sft.sft_learning_rate,
        "rm_learning_rate": cfg.reward_model.rm_learning_rate,
        "ppo_learning_rate": cfg.ppo.ppo_learning_rate,
        "contrastive_temp": cfg.sft.contrastive_temp,
        "temperature": cfg.rollout.temperature,
        "kl_target": cfg.ppo.kl_target,
        "rollout_num_cpus": cfg.rollout.rollout_num_cpus,
        "reward_url_timeout": cfg.rewards.reward_url_timeout,
        "length_band_width": cfg.rewards.length_band_width,
        "reward_num_cpus": cfg.rewards.reward_num_cpus,
        "critic_num_cpus": cfg.debate.critic_num_cpus,
        "critic_timeout": cfg.debate.critic_timeout,
    }
    for flag, value in positive_floats.items():
        _require(value > 0, flag, f"must be > 0, got {value}")
    non_negative = {
        "weight_decay": cfg.sft.weight_decay,
        "max_grad_norm": cfg.sft.max_grad_norm,
        "contrastive_weight": cfg.sft.contrastive_weight,
        "critique_weight": cfg.sft.critique_weight,
        "quality_weight": cfg.rewards.quality_weight,
        "fluency_weight": cfg.rewards.fluency_weight,
        "faithfulness_weight": cfg.rewards.faithfulness_weight,
        "coherence_weight": cfg.rewards.coherence_weight,
        "length_weight": cfg.rewards.length_weight,
        "debate_weight": cfg.rewards.debate_weight,
        "plugin_weight": cfg.rewards.plugin_weight,
        "reward_url_weight": cfg.rewards.reward_url_weight,
        "critic_temperature": cfg.debate.critic_temperature,
        "critic_retries": cfg.debate.critic_retries,
        "reward_clip": cfg.rewards.reward_clip,
        "reward_url_retries": cfg.rewards.reward_url_retries,
        "length_band_min": cfg.rewards.length_band_min,
        "init_kl_coef": cfg.ppo.init_kl_coef,
        "vf_coef": cfg.ppo.vf_coef,
        "entropy_coef": cfg.ppo.entropy_coef,
        "clip_eps": cfg.ppo.clip_eps,
        "rollout_max_restarts": cfg.rollout.rollout_max_restarts,
        "max_failures": cfg.run.max_failures,
        "stop_after_steps": cfg.run.stop_after_steps,
        "top_k": cfg.rollout.top_k,
    }
    for flag, value in non_negative.items():
        _require(value >= 0, flag, f"must be >= 0, got {value}")
    _require(0.0 <= cfg.sft.warmup_ratio < 1.0, "warmup_ratio", "must be in [0, 1)")
    _require(0.0 < cfg.rollout.top_p <= 1.0, "top_p", "must be in (0, 1]")
    _require(
        cfg.rollout.rollout_num_gpus >= 0,
        "rollout_num_gpus",
        f"must be >= 0, got {cfg.rollout.rollout_num_gpus}",
    )
    _require(
        cfg.rollout.tensor_parallel_size == 1
        or cfg.rollout.rollout_num_gpus >= cfg.rollout.tensor_parallel_size,
        "tensor_parallel_size",
        "needs --rollout_num_gpus >= --tensor_parallel_size (GPU only)",
    )
    _require(
        cfg.rollout.tensor_parallel_size == 1 or cfg.rollout.rollout_engine != "hf",
        "tensor_parallel_size",
        "the hf engine has no tensor parallelism",
    )
    _require(
        cfg.rollout.rollout_engine != "vllm"
        or (cfg.rollout.top_k == 0 and cfg.rollout.top_p == 1.0),
        "rollout_engine",
        "vllm cannot return the learner's unrenormalised logprobs under top-k/top-p; "
        "use --top_k 0 --top_p 1 or --rollout_engine hf",
    )
    _require(0.0 <= cfg.ppo.gamma <= 1.0, "gamma", "must be in [0, 1]")
    _require(0.0 <= cfg.ppo.lam <= 1.0, "lam", "must be in [0, 1]")
    _require(
        cfg.rewards.length_band_min <= cfg.rewards.length_band_max,
        "length_band_max",
        "must be >= --length_band_min",
    )
    _require(cfg.ppo.ppo_max_grad_norm >= 0, "ppo_max_grad_norm", "must be >= 0")
    for flag in ("eval_every", "kl_budget", "kl_budget_penalty"):
        _require(getattr(cfg.ppo, flag) >= 0, flag, "must be >= 0")
    _require(cfg.run.learner_num_cpus >= 0, "learner_num_cpus", "must be >= 0")
    _require(cfg.ppo.eval_prompts >= 1, "eval_prompts", "must be >= 1")
    _require(
        cfg.ppo.ppo_batch_size % cfg.run.num_workers == 0,
        "ppo_batch_size",
        f"must be a multiple of --num_workers ({cfg.run.num_workers}): each rank takes "
        "whole prompt groups",
    )
    if cfg.ppo.advantage in ("grpo", "rloo"):
        _require(
            cfg.ppo.num_samples_per_prompt >= 2,
            "num_samples_per_prompt",
            f"--advantage {cfg.ppo.advantage} needs >= 2 samples per prompt",
        )
    if cfg.rewards.reward_plugin is not None:
        _require(
            ":" in cfg.rewards.reward_plugin, "reward_plugin", "expected path/to/file.py:function"
        )
    if cfg.rewards.reward_url is not None:
        _require(
            cfg.rewards.reward_url.startswith(("http://", "https://")),
            "reward_url",
            "must start with http:// or https://",
        )
    if cfg.debate.critic_engine == "model":
        _require(bool(cfg.debate.critic_model), "critic_model", "needed by --critic_engine model")
    if cfg.debate.critic_engine == "http":
        _require(bool(cfg.debate.critic_url), "critic_url", "needed by --critic_engine http")
    _require(not (cfg.run.fp16 and cfg.run.bf16), "fp16", "choose one of --fp16 and --bf16")
    return cfg


def to_dict(cfg: Config) -> dict[str, dict[str, Any]]:
    """The config as nested plain data (what ``save_yaml`` writes)."""
    return dataclasses.asdict(cfg)


def from_dict(data: dict[str, Any], source: str = "config") -> Config:
    """Build a Config from nested data (a full or partial dump); unknown keys are errors."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of sections, got {type(data).__name__}")
    leaves = _leaf_fields()
    cfg = Config()
    for section_name, values in data.items():
        if not hasattr(cfg, section_name):
            raise ConfigError(f"{source}: unknown section {section_name!r}")
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: section {section_name!r} must be a mapping")
        section = getattr(cfg, section_name)
        for key, value in values.items():
            if key not in leaves or leaves[key][0] != section_name:
                raise ConfigError(f"{source}: unknown key {section_name}.{key}")
            setattr(section, key, _coerce(key, value, leaves[key][2]))
    return cfg


def load_yaml(path: str | Path) -> Config:
    """Read a YAML dump of the config; errors name the file."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: cannot read config: {err}") from None
    return from_dict(data, source=str(path))


def save_yaml(cfg: Config, path: str | Path) -> None:
    """Write the resolved config; ``load_yaml`` reads it back to an equal Config."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False), encoding="utf-8")


def add_config_flags(parser: argparse.ArgumentParser, exclude: tuple[str, ...] = ()) -> None:
    """Add ``--config`` and one flag per leaf field except ``exclude`` (a command that gives
    such a name another meaning; the field is then set through ``--config``); unset flags
    stay absent from the result."""
    parser.add_argument("--config", default=argparse.SUPPRESS, help="YAML dump of the config")
    sections: dict[str, argparse._ArgumentGroup] = {}
    for flag, (section, leaf, hint) in _leaf_fields().items():
        if flag in exclude:
            continue
        group = sections.setdefault(section, parser.add_argument_group(f"{section} options"))
        help_text = f"{leaf.metadata['help']} (default: {leaf.default})"
        if hint is bool:
            group.add_argument(
                f"--{flag}",
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=help_text,
            )
        elif typing.get_origin(hint) is Literal:
            group.add_argument(
                f"--{flag}",
                choices=typing.get_args(hint),
                default=argparse.SUPPRESS,
                help=help_text,
            )
        else:
            group.add_argument(f"--{flag}", default=argparse.SUPPRESS, help=help_text)


def config_from_args(args: argparse.Namespace) -> Config:
    """Defaults, then ``--config`` YAML, then the explicitly given flags; validated."""
    cfg = load_yaml(args.config) if getattr(args, "config", None) else Config()
    for flag, (section, _, hint) in _leaf_fields().items():
        if flag in vars(args):
            setattr(getattr(cfg, section), flag, _coerce(flag, vars(args)[flag], hint))
    return validate(cfg)
