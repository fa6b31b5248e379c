"""The ledger on disk: ``<output_dir>/rollouts/round-000012.parquet``, one file per recorded
round, written by a thread of its own.

Why a file per recorded round (``--ledger_every N`` records round 1, every N-th after it and
the last): a Parquet file cannot be appended to, so each is written once, whole, as soon as
its round is trained: ``ray-adlf inspect`` reads every recorded round while the run goes on,
a crash leaves whole files only (each is written to a temporary name and renamed), and a
resumed run drops exactly the files of the rounds after its checkpoint, which it makes
again. The directory reads as one table (``read_ledger``, or ``pyarrow.dataset``, pandas,
DuckDB, Ray Data); a round of the demo is one file of a few tens of KB.

``LedgerWriter.write`` only queues the round; the thread builds the table and writes it.
``flush`` waits until every queued round is on disk (the round driver calls it before each
checkpoint, so a checkpoint never lists a round the ledger lacks); an error in the thread is
raised by the next ``write``, ``flush`` or ``close``. ``pop_write_s`` gives the thread's
seconds since it was last asked (off the round's critical path, logged as
``time/ledger_write_s``).
"""

from __future__ import annotations

import json
import os
import queue
import re
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ray_adlf.ledger.schema import ledger_table

LEDGER_DIR = "rollouts"
ROUND_FILE = re.compile(r"round-(\d+)\.parquet")


def round_file(directory: Path, round_index: int) -> Path:
    return directory / f"round-{round_index:06d}.parquet"


def recorded_rounds(directory: Path) -> list[int]:
    """The rounds with a file in ``directory``, in order."""
    if not directory.is_dir():
        return []
    found = (ROUND_FILE.fullmatch(path.name) for path in directory.iterdir())
    return sorted(int(match.group(1)) for match in found if match)


def is_recorded(round_index: int, every: int, last_round: int) -> bool:
    """Whether ``--ledger_every every`` records ``round_index`` (module docstring)."""
    return every > 0 and ((round_index - 1) % every == 0 or round_index == last_round)


def write_table(table: pa.Table, path: Path) -> None:
    """``table`` to ``path`` as Parquet, atomically (a temporary file renamed)."""
    partial = path.with_name(path.name + ".partial")
    pq.write_table(table, partial, compression="zstd")
    os.replace(partial, path)


class LedgerWriter:
    """Writes rounds into ``directory`` (module docstring), starting after ``last_kept``: the
    files of later rounds (and torn temporary files) are removed first."""

    def __init__(self, directory: Path, last_kept: int) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        for stale in self.directory.glob("*.partial"):
            stale.unlink()
        for round_index in recorded_rounds(self.directory):
            if round_index > last_kept:
                round_file(self.directory, round_index).unlink()
        self._write_s, self._lock = 0.0, threading.Lock()
        self._queue: queue.Queue = queue.Queue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)
        self._thread.start()

    def write(self, round_index: int, columns: dict[str, list]) -> None:
        """Queue round ``round_index``'s rows (``{column: [rows]}``, see ``schema``)."""
        self._raise()
        self._queue.put((round_index, columns))

    def flush(self) -> None:
        """Wait until every queued round is written."""
        self._queue.join()
        self._raise()

    def pop_write_s(self) -> float:
        """The thread's seconds of work since the last call."""
        with self._lock:
            seconds, self._write_s = self._write_s, 0.0
        return seconds

    def close(self) -> None:
        """Write what is queued and stop the thread."""
        self._queue.put(None)
        self._thread.join()
        self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"the ledger writer failed in {self.directory}") from self._error

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            started = time.perf_counter()
            try:
                if self._error is None:
                    round_index, columns = item
                    write_table(ledger_table(columns), round_file(self.directory, round_index))
            except BaseException as error:  # raised again by the caller's next call
                self._error = error
            finally:
                with self._lock:
                    self._write_s += time.perf_counter() - started
                self._queue.task_done()
        self._queue.task_done()


def ledger_files(path: Path) -> list[Path]:
    """The files of a ledger: a run's output directory, its ``rollouts/``, or one file (a
    ``ray-adlf score`` output, Parquet or JSONL)."""
    path = Path(path)
    if path.is_file():
        return [path]
    directory = path / LEDGER_DIR if (path / LEDGER_DIR).is_dir() else path
    return [round_file(directory, r) for r in recorded_rounds(directory)]


def write_file(table: pa.Table, path: Path) -> None:
    """Ledger rows to one file (``ray-adlf score``'s output): JSON lines for ``.jsonl``, else
    Parquet; ``read_file`` reads either back."""
    if path.suffix != ".jsonl":
        write_table(table, path)
        return
    with path.open("w", encoding="utf-8") as out:
        for row in table.to_pylist():
            out.write(json.dumps(row, ensure_ascii=False) + "\n")


def read_file(path: Path) -> pa.Table:
    """One ledger file: Parquet, or JSON lines of the same columns (a bad line is an error
    naming the file and line)."""
    if path.suffix != ".jsonl":
        return pq.read_table(path)
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line:
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{number}: not JSON: {error.msg}") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{number}: not a JSON object")
        rows.append(row)
    if not rows:
        raise FileNotFoundError(f"{path}: no rows")
    names = dict.fromkeys(name for row in rows for name in row)
    return ledger_table({name: [row.get(name) for row in rows] for name in names})


def read_ledger(path: Path) -> pa.Table:
    """Every row of a ledger (``ledger_files``), the columns of all files (null where a file
    lacks one)."""
    files = ledger_files(path)
    if not files:
        raise FileNotFoundError(f"{path}: no ledger here (no {LEDGER_DIR}/round-*.parquet)")
    return pa.concat_tables([read_file(file) for file in files], promote_options="default")
