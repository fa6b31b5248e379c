"""The usage examples of the scripts this framework re-implements, typed as their users type them.

Each runs in a fresh process with its own local Ray, on the tiny model and the bundled sample;
the only flags added are the few that keep a CI run short (epochs, rounds, batch sizes).
"""

import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SHORT = ["--sft_epochs", "1", "--rm_epochs", "1", "--rl_rounds", "2", "--max_new_tokens", "12"]


def ray_adlf(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ray_adlf.cli", *argv],
        capture_output=True,
        text=True,
        timeout=900,
    )


def assert_pipeline_outputs(out: Path, run: subprocess.CompletedProcess, token_format: str) -> None:
    """The three stages' models load, the report exists, the console said what ran."""
    assert run.returncode == 0, run.stderr[-4000:]
    for stage in ("sft", "reward_model", "rlhf"):
        assert f"[{stage}] start" in run.stderr and f"[{stage}] done" in run.stderr
    AutoModelForCausalLM.from_pretrained(out)
    AutoModelForCausalLM.from_pretrained(out / "rlhf")
    AutoModelForSequenceClassification.from_pretrained(out / "reward_model")
    tokenizer = AutoTokenizer.from_pretrained(out)
    if token_format == "role_markers":
        assert "<user>" in tokenizer.get_vocab()
    assert (out / "report.md").is_file() and (out / "config.yaml").is_file()


def test_basic_usage_trains_the_reward_model_it_needs(tmp_path):
    out = tmp_path / "basic"
    run = ray_adlf(
        "train", "--data_path", "sample", "--model_name", "tiny",
        "--run_sft", "--run_rlhf", "--adlf_alpha", "0.3",
        "--use_coherence_reward", "--use_length_penalty",
        "--ppo_epochs", "1", "--ppo_batch_size", "4", "--max_seq_length", "256",
        "--output_dir", str(out), *SHORT,
    )  # fmt: skip
    assert "--adlf_alpha 0.3 < 1 needs a reward model" in run.stderr
    assert_pipeline_outputs(out, run, "standard")


def test_advanced_usage_without_a_stage_flag_runs_the_whole_pipeline(tmp_path):
    out = tmp_path / "advanced"
    run = ray_adlf(
        "train", "--data_path", "sample", "--model_name", "tiny",
        "--use_curriculum", "--use_multi_objective", "--use_dynamic_kl",
        "--token_format", "role_markers", "--output_dir", str(out),
        "--ppo_batch_size", "4", *SHORT,
    )  # fmt: skip
    assert "no stage flag: running the whole pipeline" in run.stderr
    assert_pipeline_outputs(out, run, "role_markers")
