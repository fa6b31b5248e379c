"""Ray Train plumbing shared by the training stages.

Run identity: the run name is ``--run_name``, else the output directory's name. A stage's Ray
Train run is ``<run_name>-<stage>`` under the storage path ``<output_dir>/ray_train``
(absolute; on a multi-node cluster ``output_dir`` must be on storage every node sees, as Ray Train
requires of a local storage path).

Resume: a stage whose run directory exists is resumed (Ray Train restores its latest checkpoint
into the new workers, ``ray.train.get_checkpoint()``); ``--resume`` without such a directory is
an error. The run directory keeps the config the run started with; resuming with different
data, model, SFT, seed or worker-count settings (which would change the data order or the
weights) is refused, naming the flags.

Trainer: ``TorchTrainer`` (DDP over gloo on CPU, NCCL on GPU) with
``ScalingConfig(num_workers, use_gpu)``; CPU workers ask for ``--learner_num_cpus`` CPUs (derived
from the cluster when 0: ``planned``, ``cpu_plan.py``); ``CheckpointConfig(num_to_keep=
--keep_checkpoints)``; ``FailureConfig(max_failures=--max_failures)``: when a worker dies, the
whole group restarts from the last checkpoint.

Outputs: the final Hugging Face model + tokenizer are copied from the last checkpoint (every file
but the training state: optimizer, scheduler, scaler, RNG, trainer state, training arguments)
into ``output_dir`` with a model card ``README.md`` and the resolved ``config.yaml``.
"""

from __future__ import annotations

import fnmatch
import functools
import logging
import os
import shutil
import signal
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ray_adlf.config import Config, ConfigError, load_yaml, redacted_dict, save_yaml
from ray_adlf.files import atomic_write_text
from ray_adlf.stages import COMPLETE_MARKER

log = logging.getLogger(__name__)

STORAGE_DIR = "ray_train"
REPORT_POLL_S = 0.2  # seconds between the Ray Train controller's polls of the workers
RUN_CONFIG_FILE = "ray_adlf_config.yaml"
TRAINING_STATE_FILES = (
    "optimizer.pt",
    "scheduler.pt",
    "scaler.pt",
    "rng_state*.pth",
    "trainer_state.json",
    "training_args.bin",
)
SFT_RESUME_SECTIONS = ("data", "model", "sft")
RESUME_FIELDS = (
    ("run", "seed"),
    ("run", "fp16"),
    ("run", "bf16"),
    ("resources", "num_workers"),
    ("resources", "learner_strategy"),
)


def run_name(cfg: Config) -> str:
    """``--run_name``, else the output directory's name."""
    return cfg.run.run_name or Path(cfg.run.output_dir).resolve().name


def storage_path(cfg: Config) -> Path:
    """Where Ray Train keeps every stage's runs and checkpoints: ``<output_dir>/ray_train``."""
    return Path(cfg.run.output_dir).resolve() / STORAGE_DIR


def stage_run_name(cfg: Config, stage: str) -> str:
    return f"{run_name(cfg)}-{stage}"


def stage_output_dir(cfg: Config, stage: str) -> Path:
    """Where a stage's model lands: ``<output_dir>/<stage>`` (sft, reward_model, rlhf, ...)."""
    return Path(cfg.run.output_dir) / stage


def stage_run_dir(cfg: Config, stage: str) -> Path:
    return storage_path(cfg) / stage_run_name(cfg, stage)


def _resume_differences(started: Config, now: Config, sections: tuple[str, ...]) -> list[str]:
    """``flag: old -> new`` for the settings that must match to resume exactly."""
    old, new = redacted_dict(started), redacted_dict(now)
    keys = [(section, key) for section in sections for key in new[section]]
    keys += list(RESUME_FIELDS)
    return [
        f"--{key}: {old[section][key]!r} -> {new[section][key]!r}"
        for section, key in keys
        if old[section][key] != new[section][key]
    ]


def prepare_stage_run(
    cfg: Config, stage: str, sections: tuple[str, ...] = SFT_RESUME_SECTIONS
) -> bool:
    """Check resume rules (module docstring), record the config; True when resuming.

    ``sections``: the config sections that must be unchanged to resume (with the seed and the
    worker count), the stage's own section and those it reads.
    """
    run_dir = stage_run_dir(cfg, stage)
    saved = run_dir / RUN_CONFIG_FILE
    if not saved.exists():
        if cfg.run.resume:
            raise ConfigError(
                f"--resume: no {stage} run {stage_run_name(cfg, stage)!r} in {storage_path(cfg)}"
            )
        run_dir.mkdir(parents=True, exist_ok=True)
        save_yaml(cfg, saved)
        return False
    differences = _resume_differences(load_yaml(saved), cfg, sections)
    if differences:
        raise ConfigError(
            f"--resume: {stage} run {stage_run_name(cfg, stage)!r} was started with other "
            f"settings ({'; '.join(differences)}); use another --run_name or --output_dir"
        )
    log.info("%s: resuming run %s from its last checkpoint", stage, run_dir)
    return True


def cluster_cpus() -> float:
    """CPUs of the Ray cluster this process is connected to."""
    import ray

    return float(ray.cluster_resources().get("CPU", 1.0))


def planned(cfg: Config, stage: str) -> Config:
    """``cfg`` with the stage's derived CPU shares filled in for the whole cluster
    (``cpu_plan.plan_resources``), checked to fit."""
    from ray_adlf.cpu_plan import check_fits, plan_resources

    budget = cluster_cpus()
    cfg = plan_resources(cfg, stage, budget)
    check_fits(cfg, stage, budget, "the Ray cluster")
    return cfg


def precision(cfg: Config) -> str:
    """``fp16``, ``bf16`` or ``fp32`` (the default); ``validate`` keeps fp16 to GPUs."""
    if cfg.run.fp16:
        return "fp16"
    return "bf16" if cfg.run.bf16 else "fp32"


def with_file_errors_raised(train_loop: Callable[[dict], None]) -> Callable[[dict], None]:
    """``train_loop`` run with SIGXFSZ blocked in its thread: a write past a file-size limit
    (``ulimit -f``, a quota) then fails with ``OSError`` naming the file, which fails the run
    with that message, instead of killing the worker with a signal that Ray reports as an
    unexpected death (and restarts into the same failure)."""

    @functools.wraps(train_loop)
    def run(loop_config: dict) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGXFSZ})
        train_loop(loop_config)

    return run


def make_torch_trainer(
    train_loop: Callable[[dict], None],
    loop_config: dict[str, Any],
    cfg: Config,
    stage: str,
    callbacks: Sequence[Any] = (),
):
    """A TorchTrainer for ``stage`` with the scaling, storage, checkpoint and failure configs;
    ``callbacks``: Ray Train ``UserCallback``s run by the controller (Tune uses one).

    Ray Train's controller polls the workers every ``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S`` (2 s by
    default) and a worker's ``report`` waits while the previous one is unread, so no RL round
    could be shorter than the interval; it is set to ``REPORT_POLL_S`` unless the user set it
    (Ray passes it from the driver to the controller)."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", str(REPORT_POLL_S))
    resources = None if cfg.resources.use_gpu else {"CPU": cfg.resources.learner_num_cpus}
    return TorchTrainer(
        with_file_errors_raised(train_loop),
        train_loop_config=loop_config,
        scaling_config=ScalingConfig(
            num_workers=cfg.resources.num_workers,
            use_gpu=cfg.resources.use_gpu,
            resources_per_worker=resources,
        ),
        run_config=RunConfig(
            name=stage_run_name(cfg, stage),
            storage_path=str(storage_path(cfg)),
            checkpoint_config=CheckpointConfig(num_to_keep=cfg.run.keep_checkpoints),
            failure_config=FailureConfig(max_failures=cfg.run.max_failures),
            callbacks=list(callbacks),
        ),
    )


def _is_training_state(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in TRAINING_STATE_FILES)


def write_model_outputs(checkpoint_dir: str | Path, cfg: Config, model_card: str) -> Path:
    """Copy model + tokenizer from ``checkpoint_dir`` into ``output_dir``; card, config, and
    last the completion marker (an output without it is unfinished: ``stages.finished_output``).
    A LoRA checkpoint (an adapter) becomes ``adapter/``, merged at the top with --merge_lora
    (``models.lora.save_lora_output``)."""
    from ray_adlf.models.lora import ADAPTER_FILES, save_lora_output

    output_dir = Path(cfg.run.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / COMPLETE_MARKER).unlink(missing_ok=True)
    source = Path(checkpoint_dir)
    for item in source.iterdir():
        if item.is_file() and not _is_training_state(item.name) and item.name not in ADAPTER_FILES:
            shutil.copy2(item, output_dir / item.name)
    if (source / ADAPTER_FILES[0]).is_file():
        save_lora_output(source, output_dir, cfg.model.merge_lora, cfg.model.trust_remote_code)
    atomic_write_text(output_dir / "README.md", model_card)
    save_yaml(cfg, output_dir / "config.yaml")
    atomic_write_text(output_dir / COMPLETE_MARKER, "")
    return output_dir
