"""``ray job submit`` of jobs/train.py and jobs/tune.py to a real local head (``ray start``).

The head runs in its own ``--temp-dir`` on free ports; it is stopped by signalling the processes
whose command line names that directory (never ``ray stop``, which ends every Ray on the host).
"""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
JOB_PREFIX = "radlf-"
# A loopback-only head of the test's own: no token authentication, so the CLI calls below and
# the head agree whatever ~/.ray holds on this machine.
ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
RAY = str(Path(sys.executable).parent / "ray")
EXCLUDES = json.dumps({"excludes": [".venv", ".git", "outputs", "**/__pycache__", "*.egg-info"]})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def processes_of(marker: str) -> list[int]:
    """Pids whose command line contains ``marker`` (this head's temp dir)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            continue
        if entry.name.isdigit() and marker in cmdline and int(entry.name) != os.getpid():
            pids.append(int(entry.name))
    return pids


@pytest.fixture(scope="module")
def head():
    temp_dir = tempfile.mkdtemp(prefix="radlf-", dir="/tmp")  # short: socket paths
    dashboard = free_port()
    subprocess.run(
        [
            RAY,
            "start",
            "--head",
            f"--temp-dir={temp_dir}",
            "--node-ip-address=127.0.0.1",
            f"--port={free_port()}",
            "--num-cpus=2",
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard}",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--ray-client-server-port={free_port()}",
            "--disable-usage-stats",
        ],
        check=True,
        env=ENV,
        timeout=120,
    )
    yield f"http://127.0.0.1:{dashboard}"
    for pid in processes_of(temp_dir):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while processes_of(temp_dir) and time.monotonic() < deadline:
        time.sleep(1)
    for pid in processes_of(temp_dir):
        os.kill(pid, signal.SIGKILL)


def submit(address: str, args: list[str]) -> str:
    """Submit ``python args...`` with the repository as working dir; wait; return its status."""
    job_id = f"{JOB_PREFIX}{time.monotonic_ns()}"
    subprocess.run(
        [
            RAY,
            "job",
            "submit",
            f"--address={address}",
            f"--submission-id={job_id}",
            "--working-dir=.",
            f"--runtime-env-json={EXCLUDES}",
            "--",
            sys.executable,  # the job runs in this venv (its python may not be on PATH)
            *args,
        ],
        cwd=ROOT,
        env=ENV,
        timeout=600,
    )
    status = subprocess.run(
        [RAY, "job", "status", f"--address={address}", job_id],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
    )
    logs = subprocess.run(
        [RAY, "job", "logs", f"--address={address}", job_id],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
    )
    return f"{status.stdout}{status.stderr}\n{logs.stdout[-3000:]}"


def test_train_job_succeeds_and_writes_model_and_report(head, tmp_path):
    out = tmp_path / "train"
    status = submit(
        head,
        [
            "jobs/train.py",
            "--model_name=tiny",
            "--data_path=sample",
            "--run_sft",
            "--sft_epochs=1",
            "--max_seq_length=96",
            f"--output_dir={out}",
        ],
    )
    assert f"Job '{JOB_PREFIX}" in status and "' succeeded" in status, status
    assert (out / "config.json").is_file() and (out / "report.md").is_file()


def test_tune_job_succeeds_with_two_trials(head, tmp_path):
    out = tmp_path / "tune"
    plugin = ROOT / "tests" / "integration" / "plugins" / "digits.py"
    status = submit(
        head,
        [
            "jobs/tune.py",
            "--space=tune_spaces/adlf_alpha.py",
            "--num_samples=2",
            "--scheduler=asha",
            "--rounds_per_trial=2",
            "--max_seq_length=96",
            "--rm_epochs=1",
            "--rollout_engine=hf",
            "--rollout_num_cpus=0.2",
            "--reward_num_cpus=0.2",
            "--learner_num_cpus=0.2",
            "--max_new_tokens=8",
            "--no-use_fluency_reward",
            f"--reward_plugin={plugin}:digit_share",
            "--ppo_batch_size=8",
            "--ppo_minibatch_size=8",
            "--ppo_epochs=1",
            "--eval_prompts=4",
            f"--output_dir={out}",
        ],
    )
    assert f"Job '{JOB_PREFIX}" in status and "' succeeded" in status, status
    best = next((out / "tune").glob("*/best_config.yaml"))
    assert (best.parent / "results.csv").is_file() and (best.parent / "report.md").is_file()
