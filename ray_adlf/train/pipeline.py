"""``run_pipeline(cfg)``: the selected training stages, in order, into ``--output_dir``.

1. Read and validate the data once (strict, or lenient with ``--lenient``), split it into
   training and held-out records by seed (``data/sft_dataset.split_records``).
2. SFT (``--run_sft``): ``train/sft.py``; the model lands in ``output_dir``.
3. The reward-model and RLHF stages follow here, each starting from the previous stage's output.

Then the resolved config (``config.yaml``) and the run report (``report.md`` with plots, from
``metrics.jsonl``) are written. Ray is started (``ray.init()``) when the caller has not
connected to it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ray_adlf.config import Config, from_dict, save_yaml, to_dict
from ray_adlf.data.sample import sample_path
from ray_adlf.data.sft_dataset import split_records
from ray_adlf.data.validate import read_records
from ray_adlf.report import write_report
from ray_adlf.train.common import run_name
from ray_adlf.train.sft import METRICS_FILE, run_sft

log = logging.getLogger(__name__)


def data_file(data_path: str) -> str:
    """``sample`` -> the bundled sample; any other path unchanged."""
    return str(sample_path()) if data_path == "sample" else data_path


def report_lines(summary: dict[str, Any]) -> list[str]:
    """One line per stage: status, steps and final losses."""
    lines = []
    for stage, values in summary.items():
        if isinstance(values, dict):
            status = "complete" if values["complete"] else "stopped early (resumable)"
            losses = ", ".join(f"{k} {values[k]:.4f}" for k in ("loss", "eval_loss") if k in values)
            lines.append(
                f"{stage}: {status}, step {values['step']} of {values['max_steps']}; "
                f"{losses}; last checkpoint `{values['checkpoint']}`"
            )
    return lines


def run_pipeline(cfg: Config) -> dict[str, Any]:
    """Run the stages selected in ``cfg``; return ``{"output_dir", "run_name", <stage>: {...}}``."""
    import ray

    if not ray.is_initialized():
        ray.init()
    cfg = from_dict(to_dict(cfg))
    cfg.run.output_dir = str(Path(cfg.run.output_dir).resolve())  # workers run elsewhere
    output_dir = Path(cfg.run.output_dir)
    records = read_records(
        data_file(cfg.data.data_path),
        lenient=cfg.data.lenient,
        max_bad_fraction=cfg.data.max_bad_fraction,
        max_line_bytes=cfg.data.max_line_bytes,
    ).records
    train_records, eval_records = split_records(records, cfg.data.eval_fraction, cfg.run.seed)
    log.info(
        "data: %d training and %d held-out records from %s",
        len(train_records),
        len(eval_records),
        cfg.data.data_path,
    )
    summary: dict[str, Any] = {"output_dir": str(output_dir), "run_name": run_name(cfg)}
    if cfg.sft.run_sft:
        summary["sft"] = run_sft(cfg, train_records, eval_records)
    output_dir.mkdir(parents=True, exist_ok=True)
    save_yaml(cfg, output_dir / "config.yaml")
    metrics_path = output_dir / METRICS_FILE
    if metrics_path.exists():
        summary["report"] = str(
            write_report(
                output_dir, metrics_path, f"ray_adlf run {run_name(cfg)}", report_lines(summary)
            )
        )
    return summary
