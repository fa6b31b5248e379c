"""The README's main-job command, ``ray-adlf demo``, end to end in a fresh process on a terminal.

It runs under a pseudo-terminal, as a person sees it, so the progress bars are drawn; the
console is then replayed the way a terminal shows it (a carriage return redraws its line).
"""

import os
import pty
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

pytestmark = [pytest.mark.integration, pytest.mark.slow]
DEMO_BUDGET_S = 600  # the bound for a fresh install on this 2-core machine
MAX_LINES = 60
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def run_on_a_terminal(argv: list[str], timeout: float) -> tuple[int, str]:
    """Run ``argv`` with stdout and stderr on a pseudo-terminal; (exit code, raw output)."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower)
    os.close(follower)
    chunks, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed: the process ended
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    return process.wait(timeout=30), b"".join(chunks).decode(errors="replace")


def screen_lines(raw: str) -> list[str]:
    """The lines left on screen: each line as its last redraw shows it."""
    text = ANSI.sub("", raw).replace("\r\n", "\n")
    return [line.split("\r")[-1] for line in text.split("\n") if line.split("\r")[-1].strip()]


def finished_bar_draws(raw: str) -> dict[str, int]:
    """How often each stage's bar was drawn complete (``stage: 100%``)."""
    draws: dict[str, int] = {}
    for segment in re.split(r"[\r\n]", ANSI.sub("", raw)):
        match = re.match(r"\s*(\w+):\s+100%\|", segment)
        if match:
            draws[match.group(1)] = draws.get(match.group(1), 0) + 1
    return draws


def test_demo_shows_what_rlhf_did_on_a_readable_console(tmp_path):
    started = time.monotonic()
    argv = [sys.executable, "-m", "ray_adlf.cli", "demo", "--output_dir", str(tmp_path / "demo")]
    code, raw = run_on_a_terminal(argv, DEMO_BUDGET_S)
    elapsed = time.monotonic() - started
    lines = screen_lines(raw)
    assert code == 0, "\n".join(lines[-40:])
    assert len(lines) < MAX_LINES, "\n".join(lines)
    assert not [line for line in lines if re.search(r"\{'\w+': [-\d.e]+", line)], "metrics dict"
    assert not [line for line in lines if "TrainingReport" in line or "core_worker" in line]
    assert all(count == 1 for count in finished_bar_draws(raw).values()), finished_bar_draws(raw)
    for stage in ("sft", "reward_model", "eval_reward_model", "rlhf"):
        assert any(line.startswith(f"[{stage}] start") for line in lines), stage
        assert any(line.startswith(f"[{stage}] done") for line in lines), stage
    assert any("before RLHF" in line for line in lines[-6:])
    assert any("after RLHF" in line for line in lines[-6:])
    report = Path(next(line for line in lines if "run report: " in line).split("run report: ")[1])
    assert report.is_file() and elapsed < DEMO_BUDGET_S
    out = report.parent
    for plot in ("sft_loss.png", "reward_model_loss.png", "rlhf_reward.png", "rlhf_eval.png"):
        assert (out / "plots" / plot).is_file(), plot
    AutoModelForCausalLM.from_pretrained(out)
    AutoModelForSequenceClassification.from_pretrained(out / "reward_model")
    text = report.read_text()
    assert "rlhf: complete" in text and "before RLHF" in text and "after RLHF" in text
    print(f"demo: {elapsed:.0f} s, {len(lines)} lines")
