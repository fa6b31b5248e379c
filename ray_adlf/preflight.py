"""Checks that run before Ray starts and before any stage trains, in seconds.

Everything that can be known without training is checked here, so a bad command fails at once
with ``ray-adlf: error: <flag or file>: <reason>`` instead of minutes into a run:

- the data file: ``sample``, or an existing regular readable file; then every row is read and
  validated (``data/validate.py``), so the stages get records that are known good;
- the output directory: creatable (no file in the way, its nearest existing parent a writable
  directory), not a file itself; ``--resume`` needs an earlier run in it;
- models: a path-like ``--model_name``, ``--reward_model_path``, ``--eval_reward_model_path``
  or ``--critic_model`` must be a model directory (a ``config.json`` in it); hub names are
  left to ``from_pretrained``; the policy the RL stage starts from (when SFT does not run
  first) must have the ``--token_format``'s tokens (or a chat template for ``standard``);
- the stages and what they need (``stages.plan_stages``);
- ``--reward_plugin``: the file is imported once and the function found;
- resources: GPUs asked for (``--use_gpu``, ``--rollout_num_gpus``) against those present, and
  the RL stage's CPU plan (``cpu_plan.py``) against the CPUs of the machine when Ray is started
  here; ``check_cluster`` repeats both against ``ray.cluster_resources()`` once connected,
  still before any stage.

Numbers (finite, in range, seeds in [0, 2^32), temperatures > 0) are ``config.validate``'s.
No torch, transformers or Ray import happens here.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from ray_adlf.config import Config, ConfigError
from ray_adlf.cpu_plan import RL_STAGE, check_fits, plan_resources
from ray_adlf.data.formats import format_special_tokens
from ray_adlf.data.records import Record
from ray_adlf.data.sample import sample_path
from ray_adlf.models.lora import ADAPTER_DIR, is_adapter_dir, refuse_new_tokens
from ray_adlf.models.tiny import tiny_model_path
from ray_adlf.stages import StagePlan, plan_stages


@dataclass
class TrainPlan:
    """What the checks found: the stages to run and the validated, split records."""

    stages: StagePlan
    train_records: list[Record] = field(default_factory=list)
    eval_records: list[Record] = field(default_factory=list)


def data_file(data_path: str) -> str:
    """``sample`` -> the bundled sample; any other path unchanged."""
    return str(sample_path()) if data_path == "sample" else data_path


def check_readable_file(flag: str, path: str) -> None:
    """``path`` is an existing regular file we may read (never opens it: a FIFO would block)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        kind = "a dangling symbolic link" if os.path.islink(path) else "no such file"
        raise ConfigError(f"--{flag}: {path}: {kind}") from None
    except OSError as err:
        raise ConfigError(f"--{flag}: {path}: {err.strerror}") from None
    if stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"--{flag}: {path}: is a directory, not a data file")
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"--{flag}: {path}: not a regular file (a FIFO, device or socket)")
    if not os.access(path, os.R_OK):
        raise ConfigError(f"--{flag}: {path}: not readable (permission denied)")


def check_output_dir(path: str) -> None:
    """``path`` is a directory, or can be created: no file on the way, a writable parent."""
    target = Path(path).expanduser().absolute()
    if target.exists() and not target.is_dir():
        raise ConfigError(f"--output_dir: {path}: exists and is not a directory")
    existing = target
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"--output_dir: {path}: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"--output_dir: {path}: {existing} is not writable")


def looks_like_path(name: str) -> bool:
    """True for names that can only mean a local path (``/x``, ``./x``, ``~/x``, ``x/y/z``, or
    anything that exists); ``org/name`` hub ids and bare names are not."""
    return (
        name.startswith(("/", ".", "~"))
        or name.count("/") > 1
        or os.path.exists(os.path.expanduser(name))
    )


def model_dir(name: str) -> Path | None:
    """The local directory of a model name (``tiny`` included), or None for a hub name."""
    if name == "tiny":
        return tiny_model_path()
    return Path(os.path.expanduser(name)) if looks_like_path(name) else None


def check_model(flag: str, name: str) -> None:
    """A local model named by ``flag`` is a directory with a ``config.json``."""
    directory = model_dir(name)
    if directory is None:
        return
    if not directory.is_dir():
        raise ConfigError(f"--{flag}: {name}: no such model directory")
    if not (directory / "config.json").is_file() and not is_adapter_dir(directory / ADAPTER_DIR):
        raise ConfigError(
            f"--{flag}: {name}: not a model directory (no config.json, no LoRA {ADAPTER_DIR}/)"
        )


def tokenizer_tokens(directory: Path) -> tuple[set[str], bool]:
    """The added tokens of a saved tokenizer and whether it has a chat template (file reads)."""
    tokens: set[str] = set()
    template = (directory / "chat_template.jinja").is_file()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        path = directory / name
        if not path.is_file():
            continue
        data = json.loads(path.read_text(encoding="utf-8"))
        tokens |= {t["content"] for t in data.get("added_tokens", []) if "content" in t}
        tokens |= {t["content"] for t in data.get("added_tokens_decoder", {}).values()}
        tokens |= set(data.get("additional_special_tokens") or [])
        tokens |= set(data.get("extra_special_tokens") or [])
        template = template or bool(data.get("chat_template"))
    return tokens, template


def check_token_format(flag: str, name: str, token_format: str) -> None:
    """The model RL starts from without SFT must already speak ``token_format``."""
    directory = model_dir(name)
    if directory is None or not directory.is_dir():
        return
    tokens, template = tokenizer_tokens(directory)
    if token_format == "standard" and not template:
        raise ConfigError(
            f"--{flag}: {name}: its tokenizer has no chat template for --token_format standard; "
            "add --run_sft with --token_format role_markers or turn_markers"
        )
    missing = [t for t in format_special_tokens(token_format) if t not in tokens]
    if missing:
        raise ConfigError(
            f"--{flag}: {name}: its tokenizer lacks the {token_format} tokens "
            f"({', '.join(missing)}); add --run_sft (it adds them) or use that format's SFT output"
        )


def check_plugin(spec: str) -> None:
    """Import the ``--reward_plugin`` file once and find its function."""
    from ray_adlf.rewards.plugins import RewardPluginError, load_plugin

    path = spec.rpartition(":")[0]
    check_readable_file("reward_plugin", path)
    try:
        load_plugin(spec)
    except RewardPluginError as err:
        raise ConfigError(str(err).lstrip("-")) from None
    except Exception as err:  # the plugin's own import-time error
        raise ConfigError(
            f"--reward_plugin: {path}: importing it raised {type(err).__name__}: {err}"
        ) from None


def local_cpus() -> float:
    """CPUs this process may use (what a local ``ray.init()`` would report)."""
    return float(len(os.sched_getaffinity(0)))


def local_gpus() -> int:
    """NVIDIA GPUs visible here, without importing torch: ``CUDA_VISIBLE_DEVICES`` when set,
    else the ``/dev/nvidiaN`` device files."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    return len([d for d in Path("/dev").glob("nvidia[0-9]*")])


def gpus_needed(cfg: Config, stages: StagePlan) -> int:
    """GPUs the largest stage holds at once (learner workers, plus rollout GPUs in RL)."""
    res = cfg.resources
    learner = res.num_workers if res.use_gpu else 0
    rollout = res.num_rollout_workers * res.rollout_num_gpus if RL_STAGE in stages.run else 0
    return int(-(-(learner + rollout) // 1))


def check_resources(cfg: Config, stages: StagePlan, cpus: float, gpus: float, where: str) -> None:
    """GPUs and the RL stage's CPUs against what ``where`` has."""
    needed = gpus_needed(cfg, stages)
    if needed > gpus:
        flag = "use_gpu" if cfg.resources.use_gpu else "rollout_num_gpus"
        raise ConfigError(f"--{flag}: needs {needed} GPU(s) but {where} has {gpus:g}")
    if RL_STAGE in stages.run:
        check_fits(plan_resources(cfg, RL_STAGE, cpus), RL_STAGE, cpus, where)


def starts_local_ray() -> bool:
    """True when this process will start its own Ray (no cluster address to join)."""
    return not os.environ.get("RAY_ADDRESS")


def read_data(cfg: Config) -> tuple[list[Record], list[Record]]:
    """The validated records of ``--data_path`` (checked by ``check_paths`` first), split
    into training and held-out by seed."""
    from ray_adlf.data.records import split_records
    from ray_adlf.data.validate import read_records

    data = cfg.data
    records = read_records(
        data_file(data.data_path),
        lenient=data.lenient,
        max_bad_fraction=data.max_bad_fraction,
        max_line_bytes=data.max_line_bytes,
        max_total_bytes=data.max_total_bytes,
        max_rows=data.max_rows,
    ).records
    return split_records(records, data.eval_fraction, cfg.run.seed)


def check_lora_tokens(name: str, token_format: str) -> None:
    """LoRA leaves the embeddings frozen: a format whose tokens the model's tokenizer lacks
    would add untrained ones (``models.lora.refuse_new_tokens``, said before Ray starts)."""
    directory = model_dir(name)
    if directory is None or not directory.is_dir():
        return
    tokens, _ = tokenizer_tokens(directory)
    added = sum(t not in tokens for t in format_special_tokens(token_format))
    try:
        refuse_new_tokens(added, token_format, name)
    except ValueError as error:
        raise ConfigError(f"--use_lora: {error}") from None


def check_paths(cfg: Config) -> None:
    """Data file, output directory, models and plugin (module docstring)."""
    if cfg.data.data_path != "sample":
        check_readable_file("data_path", cfg.data.data_path)
    check_output_dir(cfg.run.output_dir)
    if cfg.run.resume and not (Path(cfg.run.output_dir) / "ray_train").is_dir():
        raise ConfigError(f"--resume: no earlier run in {cfg.run.output_dir}")
    check_model("model_name", cfg.model.model_name)
    for flag, name in (
        ("reward_model_path", cfg.reward_model.reward_model_path),
        ("eval_reward_model_path", cfg.ppo.eval_reward_model_path),
        ("critic_model", cfg.debate.critic_model if cfg.rewards.use_debate_reward else None),
    ):
        if name:
            check_model(flag, name)
    if cfg.rewards.reward_plugin:
        check_plugin(cfg.rewards.reward_plugin)


def check_train(cfg: Config) -> TrainPlan:
    """Every check of the module docstring that needs no cluster; the plan and the records."""
    check_paths(cfg)
    stages = plan_stages(cfg)
    if stages.rl_policy_needs_format:
        check_token_format("model_name", cfg.model.model_name, cfg.data.token_format)
    if cfg.model.use_lora and (cfg.sft.run_sft or cfg.reward_model.run_reward_model):
        check_lora_tokens(cfg.model.model_name, cfg.data.token_format)
    if starts_local_ray():
        check_resources(cfg, stages, local_cpus(), local_gpus(), "this machine")
    train_records, eval_records = read_data(cfg)
    return TrainPlan(stages, train_records, eval_records)


def check_cluster(cfg: Config, stages: StagePlan) -> None:
    """``check_resources`` against the connected Ray cluster (after ``ray.init``)."""
    import ray

    total = ray.cluster_resources()
    check_resources(cfg, stages, total.get("CPU", 0.0), total.get("GPU", 0.0), "the Ray cluster")
