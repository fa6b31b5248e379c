"""The README's main-job command, ``ray-adlf demo``, end to end in a fresh process."""

import subprocess
import sys
import time
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

pytestmark = pytest.mark.integration
DEMO_BUDGET_S = 600  # the bound for a fresh install on this 2-core machine


def test_demo_runs_the_whole_pipeline_and_prints_the_report(tmp_path):
    started = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "ray_adlf.cli", "demo", "--output_dir", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=DEMO_BUDGET_S,
    )
    elapsed = time.monotonic() - started
    assert run.returncode == 0, run.stderr[-3000:]
    report = Path(run.stdout.split("run report: ")[1].split()[0])
    assert report.is_file() and elapsed < DEMO_BUDGET_S
    out = report.parent
    for plot in ("sft_loss.png", "reward_model_loss.png", "rlhf_reward.png", "rlhf_kl.png"):
        assert (out / "plots" / plot).is_file(), plot
    AutoModelForCausalLM.from_pretrained(out)
    AutoModelForSequenceClassification.from_pretrained(out / "reward_model")
    text = report.read_text()
    assert "rlhf: complete, step 16 of 16" in text and "debate" in text
    print(f"demo: {elapsed:.0f} s")
