"""``run_pipeline(cfg)``: the selected training stages, in order, into ``--output_dir``.

1. Read and validate the data once (strict, or lenient with ``--lenient``), split it into
   training and held-out records by seed (``data/sft_dataset.split_records``).
2. SFT (``--run_sft``, ``train/sft.py``) -> ``output_dir/sft``.
3. Reward model (``--run_reward_model``, ``train/reward_model.py``) -> ``output_dir/reward_model``,
   starting from the SFT output. With ``--eval_every`` (the held-out objective, e.g. for Tune)
   and no ``--eval_reward_model_path``, the training records are split in two disjoint halves:
   the reward model learns from one, an evaluation reward model (``output_dir/eval_reward_model``)
   from the other, so the policy is never judged by the model it was trained against.
4. RLHF (``--run_rlhf``, ``train/ppo.py``) -> ``output_dir/rlhf``, from the SFT output (or
   ``--model_name``), with the reward model of step 3 (or ``--reward_model_path``).

A stage left unfinished by ``--stop_after_steps`` ends the pipeline there; the same command
continues it. Models of earlier runs into the same ``output_dir`` are reused when their stage is
not run again. The last policy stage's model (RLHF, else SFT) is also written to ``output_dir``
itself, next to the resolved ``config.yaml`` and the run report (``report.md`` with plots, from
``metrics.jsonl``). Ray is started (``ray.init()``) when the caller has not connected to it.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from ray_adlf.config import Config, from_dict, save_yaml, to_dict
from ray_adlf.data.records import Record
from ray_adlf.data.sample import sample_path
from ray_adlf.data.sft_dataset import split_records
from ray_adlf.data.validate import read_records
from ray_adlf.models.loading import resolve_model_path
from ray_adlf.report import write_report
from ray_adlf.tracking import METRICS_FILE
from ray_adlf.train.common import run_name, stage_output_dir
from ray_adlf.train.ppo import run_rlhf
from ray_adlf.train.reward_model import EVAL_STAGE, run_reward_model
from ray_adlf.train.sft import run_sft

log = logging.getLogger(__name__)
REPORTED = ("loss", "eval_loss", "eval_spearman", "reward", "kl", "eval/objective")


def data_file(data_path: str) -> str:
    """``sample`` -> the bundled sample; any other path unchanged."""
    return str(sample_path()) if data_path == "sample" else data_path


def report_lines(summary: dict[str, Any]) -> list[str]:
    """One line per stage: status, steps and its final figures."""
    lines = []
    for stage, values in summary.items():
        if isinstance(values, dict):
            status = "complete" if values["complete"] else "stopped early (resumable)"
            losses = ", ".join(f"{k} {values[k]:.4f}" for k in REPORTED if k in values)
            lines.append(
                f"{stage}: {status}, step {values['step']} of {values['max_steps']}; "
                f"{losses}; last checkpoint `{values['checkpoint']}`"
            )
    return lines


def read_and_split(cfg: Config) -> tuple[list[Record], list[Record]]:
    """The validated records of ``--data_path``, split into training and held-out by seed."""
    records = read_records(
        data_file(cfg.data.data_path),
        lenient=cfg.data.lenient,
        max_bad_fraction=cfg.data.max_bad_fraction,
        max_line_bytes=cfg.data.max_line_bytes,
    ).records
    return split_records(records, cfg.data.eval_fraction, cfg.run.seed)


def existing_model(cfg: Config, stage: str) -> str | None:
    """``output_dir/<stage>`` when an earlier run left a model there."""
    path = stage_output_dir(cfg, stage)
    return str(path) if (path / "config.json").is_file() else None


def publish_policy(policy_dir: str, output_dir: Path) -> None:
    """Copy the final policy's files (model, tokenizer, card) into ``output_dir``."""
    for item in Path(policy_dir).iterdir():
        if item.is_file() and item.name != "config.yaml":
            shutil.copy2(item, output_dir / item.name)


def run_pipeline(cfg: Config) -> dict[str, Any]:
    """Run the stages selected in ``cfg``; return ``{"output_dir", "run_name", <stage>: {...}}``."""
    import ray

    if not ray.is_initialized():
        ray.init()
    cfg = from_dict(to_dict(cfg))
    cfg.run.output_dir = str(Path(cfg.run.output_dir).resolve())  # workers run elsewhere
    output_dir = Path(cfg.run.output_dir)
    train_records, eval_records = read_and_split(cfg)
    log.info(
        "data: %d training and %d held-out records from %s",
        len(train_records),
        len(eval_records),
        cfg.data.data_path,
    )
    summary: dict[str, Any] = {"output_dir": str(output_dir), "run_name": run_name(cfg)}
    policy = existing_model(cfg, "sft") or resolve_model_path(cfg.model.model_name)
    reward_model = cfg.reward_model.reward_model_path or existing_model(cfg, "reward_model")
    eval_reward_model = cfg.ppo.eval_reward_model_path or existing_model(cfg, EVAL_STAGE)
    final_policy = None
    stages_done = True
    if cfg.sft.run_sft:
        summary["sft"] = run_sft(cfg, train_records, eval_records)
        stages_done = summary["sft"]["complete"]
        final_policy = summary["sft"].get("path")
        policy = final_policy or policy
    if stages_done and cfg.reward_model.run_reward_model:
        rm_records, eval_rm_records = train_records, []
        if cfg.ppo.eval_every and not cfg.ppo.eval_reward_model_path:
            rm_records, eval_rm_records = split_records(train_records, 0.5, cfg.run.seed)
        summary["reward_model"] = run_reward_model(cfg, rm_records, eval_records)
        stages_done = summary["reward_model"]["complete"]
        reward_model = summary["reward_model"].get("path", reward_model)
        if stages_done and eval_rm_records:
            summary[EVAL_STAGE] = run_reward_model(cfg, eval_rm_records, eval_records, EVAL_STAGE)
            stages_done = summary[EVAL_STAGE]["complete"]
            eval_reward_model = summary[EVAL_STAGE].get("path", eval_reward_model)
    if stages_done and cfg.ppo.run_rlhf:
        summary["rlhf"] = run_rlhf(
            cfg, train_records, policy, reward_model, eval_records, eval_reward_model
        )
        final_policy = summary["rlhf"].get("path")
    output_dir.mkdir(parents=True, exist_ok=True)
    if final_policy:
        publish_policy(final_policy, output_dir)
    save_yaml(cfg, output_dir / "config.yaml")
    metrics_path = output_dir / METRICS_FILE
    if metrics_path.exists():
        summary["report"] = str(
            write_report(
                output_dir, metrics_path, f"ray_adlf run {run_name(cfg)}", report_lines(summary)
            )
        )
    return summary
