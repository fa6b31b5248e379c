"""Run tracking: every metrics row goes to a local JSONL file, and to W&B with ``--use_wandb``.

Metrics file: one JSON object a line, ``{"stage": "sft", "step": 12, "time": 1732.5, ...}``
(``time`` in Unix seconds). A resumed session first drops its stage's rows after the step it
resumes from, so the file reads as one uninterrupted run even after a restart. A line that is
not a JSON object (the torn last line of a process killed mid-write) is dropped with one warning
naming the file and line, when read and when the file is rewritten (atomically) on resume.

W&B: every row, and the RL ledger's rows of each recorded round as a ``wandb.Table``
(``<stage>/rollouts``, at the round's step). ``online`` when an API key is configured
(``WANDB_API_KEY`` or a netrc entry for api.wandb.ai) and api.wandb.ai answers within 3 s;
otherwise ``offline`` (runs are written under
``<output_dir>/wandb``; ``wandb sync`` uploads them later), said once in the log. A
``WANDB_MODE`` set by the user wins. The W&B run id is a hash of the output directory, run name
and stage, so a resumed run continues the same W&B run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import netrc
import os
import socket
import time
from pathlib import Path
from typing import Any

from ray_adlf.files import atomic_write_text

log = logging.getLogger(__name__)
METRICS_FILE = "metrics.jsonl"
WANDB_HOST = "api.wandb.ai"


class MetricsFile:
    """Append-only JSONL of one stage's metrics rows (other stages' rows are left alone)."""

    def __init__(self, path: str | Path, stage: str):
        self.path = Path(path)
        self.stage = stage
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def truncate_after(self, step: int) -> None:
        """Drop this stage's rows with ``step`` greater than ``step`` (and torn lines)."""
        if not self.path.exists():
            return
        kept = [
            row
            for row in read_metrics(self.path)
            if not (row.get("stage") == self.stage and row.get("step", 0) > step)
        ]
        atomic_write_text(self.path, "".join(json.dumps(row) + "\n" for row in kept))

    def append(self, metrics: dict[str, Any], step: int) -> None:
        row = {"stage": self.stage, "step": step, "time": round(time.time(), 3), **metrics}
        with self.path.open("a+b") as out:
            torn = False
            if out.tell() > 0:
                out.seek(-1, os.SEEK_END)
                torn = out.read(1) != b"\n"
            out.write((("\n" if torn else "") + json.dumps(row) + "\n").encode("utf-8"))


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All rows of a metrics file, in file order; lines that are not a JSON object are
    skipped with a warning naming the file and line."""
    rows = []
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if isinstance(row, dict):
            rows.append(row)
        else:
            log.warning("%s:%d: not a metrics row (torn write?), skipped", path, number)
    return rows


def _has_wandb_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators(WANDB_HOST) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def _reachable(host: str, timeout: float = 3.0) -> bool:
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def wandb_mode() -> tuple[str, str]:
    """``(mode, why)``: the user's ``WANDB_MODE``, else online with a key and network."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"], "WANDB_MODE is set"
    if not _has_wandb_key():
        return "offline", "no W&B API key (WANDB_API_KEY or netrc)"
    if not _reachable(WANDB_HOST):
        return "offline", f"{WANDB_HOST} is not reachable"
    return "online", "API key and network present"


def wandb_run_id(output_dir: str | Path, run_name: str, stage: str) -> str:
    """A stable W&B run id for (output_dir, run_name, stage)."""
    key = f"{Path(output_dir).resolve()}|{run_name}|{stage}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


class Tracker:
    """Logs metric rows to the metrics file and, when given, a W&B run."""

    def __init__(self, metrics_file: MetricsFile, wandb_run=None):
        self.metrics_file = metrics_file
        self.wandb_run = wandb_run

    def log(
        self, metrics: dict[str, Any], step: int, samples: dict[str, list] | None = None
    ) -> None:
        """One row of ``metrics`` at ``step``; with W&B, ``samples`` (``{column: [rows]}``, the
        round's ledger rows) go to the same step as the table ``<stage>/rollouts``, in the
        ledger's columns (a fixed column the rows lack is null, as in the Parquet file)."""
        self.metrics_file.append(metrics, step)
        if self.wandb_run is None:
            return
        row = {f"{self.metrics_file.stage}/{k}": v for k, v in metrics.items()}
        if samples is not None:
            import wandb

            from ray_adlf.ledger.schema import column_order

            names, empty = column_order(samples), [None] * len(samples["sample"])
            data = [list(row) for row in zip(*(samples.get(name, empty) for name in names))]
            row[f"{self.metrics_file.stage}/rollouts"] = wandb.Table(columns=names, data=data)
        self.wandb_run.log(row, step=step)

    def close(self) -> None:
        if self.wandb_run is not None:
            self.wandb_run.finish()


def start_tracker(
    metrics_path: str | Path,
    stage: str,
    resume_step: int,
    output_dir: str | Path,
    run_name: str,
    config: dict[str, Any],
    use_wandb: bool,
    wandb_project: str,
) -> Tracker:
    """A Tracker for ``stage``; rows after ``resume_step`` are dropped first (see module doc)."""
    metrics_file = MetricsFile(metrics_path, stage)
    metrics_file.truncate_after(resume_step)
    if not use_wandb:
        return Tracker(metrics_file)
    import wandb

    mode, why = wandb_mode()
    if mode == "offline":
        log.warning(
            "W&B: offline mode (%s); sync later with `wandb sync %s/wandb`", why, output_dir
        )
    run = wandb.init(
        project=wandb_project,
        name=f"{run_name}-{stage}",
        group=run_name,
        id=wandb_run_id(output_dir, run_name, stage),
        resume="allow",
        dir=str(output_dir),
        config=config,
        mode=mode,
    )
    return Tracker(metrics_file, run)
