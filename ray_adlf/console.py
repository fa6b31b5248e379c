"""What a person sees: one line when a stage starts and ends, one live progress bar per running
stage, each warning once; the full record goes to files.

- ``configure_console(verbose)``: the console handler (stderr). Without ``--verbose`` it shows
  ``ray_adlf``'s INFO lines and every other library's warnings, each distinct message once;
  third-party progress bars (weight loading, shard writing) and advisory chatter are switched
  off through their environment variables, which Ray workers inherit.
- ``attach_run_log(output_dir)``: every log record of every library, at DEBUG, to
  ``<output_dir>/logs/ray_adlf.log`` (tracebacks of failed stages included).
- ``ray_init_options(verbose)``: Ray started quietly: workers' output stays in Ray's own log
  files (``log_to_driver=False``) and Ray's INFO lines go to the run log only.
- ``StageProgress``: a bar on the driver fed by the stage's rows in ``metrics.jsonl`` (rank 0
  writes them; the driver reads new lines every half second), so it works the same for Ray
  Train workers on any node. It is drawn only on a terminal; elsewhere (CI logs, ``ray job
  logs``) the start and end lines say it all.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any

LOG_DIR = "logs"
LOG_FILE = "ray_adlf.log"
QUIET_ENV = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS": "0",
    "WANDB_SILENT": "true",
}
ADVISORY_LOGGERS = (  # warnings that advise rather than warn: run log only unless --verbose
    "ray._private.authentication",
)
log = logging.getLogger("ray_adlf")
_run_log: list[Path] = []


class OnceFilter(logging.Filter):
    """Passes each distinct (logger, message) once."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[tuple[str, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.getMessage())
        if key in self.seen:
            return False
        self.seen.add(key)
        return True


class ConsoleFilter(logging.Filter):
    """``ray_adlf`` at INFO and up, other libraries at WARNING and up except the advisories of
    ``ADVISORY_LOGGERS`` (everything at INFO and up with verbose)."""

    def __init__(self, verbose: bool) -> None:
        super().__init__()
        self.verbose = verbose

    def filter(self, record: logging.LogRecord) -> bool:
        if self.verbose or record.name.split(".")[0] == "ray_adlf":
            return record.levelno >= logging.INFO
        if record.name.startswith(ADVISORY_LOGGERS) and record.levelno < logging.ERROR:
            return False
        return record.levelno >= logging.WARNING


class BarSafeHandler(logging.StreamHandler):
    """Writes through ``tqdm.write`` so a live bar is redrawn below the line, not torn."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # logging must never raise into the run
            self.handleError(record)


def configure_console(verbose: bool) -> None:
    """Install the console handler on the root logger (module docstring)."""
    if not verbose:
        for key, value in QUIET_ENV.items():
            os.environ.setdefault(key, value)
    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    for handler in [h for h in root.handlers if getattr(h, "ray_adlf_console", False)]:
        root.removeHandler(handler)
    handler = BarSafeHandler(sys.stderr)
    handler.ray_adlf_console = True
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.addFilter(ConsoleFilter(verbose))
    if not verbose:
        handler.addFilter(OnceFilter())
    root.addHandler(handler)
    logging.captureWarnings(True)  # Python warnings become log records: once each, in the log
    for noisy in ("urllib3", "filelock", "fsspec", "matplotlib", "PIL", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def attach_run_log(output_dir: str | Path) -> Path:
    """Send every record (DEBUG and up) to ``<output_dir>/logs/ray_adlf.log``; its path."""
    path = Path(output_dir) / LOG_DIR / LOG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    if not any(getattr(h, "baseFilename", None) == str(path) for h in root.handlers):
        handler = logging.FileHandler(path, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    _run_log[:] = [path]
    return path


def run_log_path() -> str:
    """The run log of this process (``attach_run_log``), or where Ray keeps worker logs."""
    return str(_run_log[0]) if _run_log else "Ray's session logs (/tmp/ray/session_latest/logs)"


def ray_init_options(verbose: bool) -> dict[str, Any]:
    """Keyword arguments for ``ray.init`` (module docstring)."""
    return {
        "log_to_driver": verbose,
        "logging_level": logging.INFO if verbose else logging.WARNING,
        "configure_logging": False,
        "runtime_env": {"env_vars": {k: os.environ[k] for k in QUIET_ENV if k in os.environ}},
    }


class StageProgress:
    """A driver-side bar for ``stage`` following its rows in the metrics file.

    Rows with ``step`` advance the bar; a row with ``max_steps`` sets the total; ``loss`` or
    ``reward`` appear beside it. Use as a context manager around the stage.
    """

    def __init__(self, metrics_path: Path, stage: str, total: int | None, unit: str) -> None:
        self.metrics_path, self.stage, self.total, self.unit = metrics_path, stage, total, unit
        self.offset = metrics_path.stat().st_size if metrics_path.exists() else 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._follow, daemon=True)
        self.bar = None

    def __enter__(self) -> StageProgress:
        if sys.stderr.isatty():
            import shutil

            from tqdm import tqdm

            self.bar = tqdm(
                total=self.total,
                desc=self.stage,
                unit=self.unit,
                leave=True,
                ncols=shutil.get_terminal_size().columns,  # 80 where a terminal reports 0
            )
            self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is None:
            return
        self.stop.set()
        self.thread.join()
        self._read()
        self.bar.close()

    def _follow(self) -> None:
        while not self.stop.wait(0.5):
            self._read()

    def _read(self) -> None:
        if not self.metrics_path.exists():
            return
        with self.metrics_path.open("rb") as handle:
            handle.seek(self.offset)
            chunk = handle.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self.offset += len(complete)
        for line in complete.splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if row.get("stage") == self.stage:
                self._show(row)

    def _show(self, row: dict[str, Any]) -> None:
        if "max_steps" in row and self.bar.total != row["max_steps"]:
            self.bar.total = row["max_steps"]
        step = row.get("step", 0)
        if step > self.bar.n:
            self.bar.update(step - self.bar.n)
        shown = {k: f"{row[k]:.4g}" for k in ("loss", "reward", "kl") if k in row}
        if shown:
            self.bar.set_postfix(shown, refresh=False)
        self.bar.refresh()
