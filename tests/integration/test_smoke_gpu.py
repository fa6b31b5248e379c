"""``jobs/smoke_gpu.py`` runs on the CPU too: the checks it makes on a GPU (finite steps, the
engine/learner logprob parity, resumed equals uninterrupted) hold here, without Ray."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_smoke_script_passes_on_the_cpu(tmp_path, precision):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    script = str(ROOT / "jobs" / "smoke_gpu.py")
    run = subprocess.run(
        [sys.executable, script, "--device", "cpu", "--precision", precision],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env=env,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert lines[-1] == "SMOKE OK"
    steps = ("SFT step", "reward-model step", "gae round 3", "grpo resume", "grpo LoRA resume")
    for step in steps:
        assert any(line.startswith(step) for line in lines), step
