"""Every bad command is refused before any work: one line naming the flag or file, exit 2.

Each case runs ``ray-adlf`` in a fresh process, as a user would, so the bound on time also
covers the imports (the checks must not wait for torch, transformers or Ray).
"""

import os
import subprocess
import sys
import time

import pytest

ERROR_BUDGET_S = 3.0
NO_GPU = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
BILLION_LAUGHS = "\n".join(
    ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    + [
        f"{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]"
        for p, c in zip("abcdefgh", "bcdefghi")
    ]
)


def files(tmp_path):
    """Paths the cases refer to: a directory, a file, a FIFO, hostile YAML files."""
    (tmp_path / "a_dir").mkdir()
    (tmp_path / "a_file").write_text("not a directory\n")
    os.mkfifo(tmp_path / "a_fifo")
    (tmp_path / "laughs.yaml").write_text(BILLION_LAUGHS)
    (tmp_path / "deep.yaml").write_text("a: " + "[" * 50_000 + "]" * 50_000 + "\n")
    (tmp_path / "broken.yaml").write_text("sft:\n  sft_epochs: 1\n  a: b: c\n")
    (tmp_path / "wrong_section.yaml").write_text("sft:\n  adlf_alpha: 0.3\n")
    (tmp_path / "plugin.py").write_text("def other(prompt, response):\n    return 0.0\n")


CASES = [  # (id, argv after `ray-adlf`, text the one line must hold)
    (
        "missing data",
        ["train", "--data_path", "{tmp}/nope.jsonl"],
        "--data_path: {tmp}/nope.jsonl: no such file",
    ),
    (
        "directory data",
        ["train", "--data_path", "{tmp}/a_dir"],
        "--data_path: {tmp}/a_dir: is a directory",
    ),
    (
        "fifo data",
        ["train", "--data_path", "{tmp}/a_fifo"],
        "--data_path: {tmp}/a_fifo: not a regular file",
    ),
    (
        "output is a file",
        ["train", "--output_dir", "{tmp}/a_file"],
        "--output_dir: {tmp}/a_file: exists and is not a directory",
    ),
    ("inf learning rate", ["train", "--ppo_learning_rate", "inf"], "--ppo_learning_rate"),
    (
        "missing plugin file",
        ["train", "--reward_plugin", "{tmp}/none.py:score"],
        "--reward_plugin: {tmp}/none.py: no such file",
    ),
    ("missing plugin function", ["train", "--reward_plugin", "{tmp}/plugin.py:score"], "score"),
    ("gpu without gpus", ["train", "--use_gpu"], "--use_gpu"),
    ("negative seed", ["train", "--seed", "-1"], "--seed"),
    ("seed too large", ["train", "--seed", str(2**32)], "--seed"),
    ("run name escapes", ["train", "--run_name", "../../x"], "--run_name"),
    ("k1 in the loss", ["train", "--kl_in_loss"], "--kl_in_loss"),
    ("zero temperature", ["train", "--temperature", "0"], "--temperature"),
    (
        "all objective weights zero",
        [
            "train",
            "--use_multi_objective",
            "--quality_weight",
            "0",
            "--fluency_weight",
            "0",
        ],
        "weight",
    ),
    (
        "missing model",
        ["train", "--model_name", "{tmp}/no_model"],
        "--model_name: {tmp}/no_model: no such model directory",
    ),
    ("not a model", ["train", "--model_name", "{tmp}/a_dir"], "not a model directory"),
    (
        "lora with new tokens",
        ["train", "--run_sft", "--use_lora", "--token_format", "role_markers"],
        "--use_lora: tiny: --token_format role_markers adds 6 token(s)",
    ),
    ("merge without lora", ["train", "--merge_lora"], "--merge_lora: needs --use_lora"),
    (
        "lora on vllm",
        ["train", "--use_lora", "--rollout_engine", "vllm"],
        "--use_lora: the vllm engine does not load LoRA adapters",
    ),
    (
        "lora with fsdp",
        ["train", "--use_lora", "--learner_strategy", "fsdp"],
        "--learner_strategy: fsdp with --use_lora is not built yet",
    ),
    (
        "key in the wrong section",
        ["train", "--config", "{tmp}/wrong_section.yaml"],
        "adlf_alpha belongs in section rewards",
    ),
    ("yaml aliases", ["train", "--config", "{tmp}/laughs.yaml"], "anchors and aliases"),
    ("deep yaml", ["train", "--config", "{tmp}/deep.yaml"], "deep.yaml: line 1: nested deeper"),
    ("broken yaml", ["train", "--config", "{tmp}/broken.yaml"], "broken.yaml:3: not valid YAML"),
    (
        "tune trials cannot fit",
        ["tune", "--space", "tune_spaces/adlf_alpha.py", "--learner_num_cpus", "4"],
        "--num_workers/--*_num_cpus",
    ),
    ("missing config", ["train", "--config", "{tmp}/none.yaml"], "none.yaml"),
    ("tune missing space", ["tune", "--space", "{tmp}/none.py"], "--space"),
    (
        "tune missing data",
        ["tune", "--space", "tune_spaces/adlf_alpha.py", "--data_path", "{tmp}/nope.jsonl"],
        "--data_path",
    ),
    (
        "score missing data",
        ["score", "--data_path", "{tmp}/nope.jsonl", "--output", "{tmp}/o.jsonl"],
        "--data_path",
    ),
]


@pytest.mark.parametrize("argv, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_bad_command_fails_in_one_line_before_any_work(tmp_path, argv, expected):
    files(tmp_path)
    tmp = str(tmp_path)
    argv = [a.format(tmp=tmp) for a in argv]
    if "--output_dir" not in argv:
        argv += ["--output_dir", f"{tmp}/out"]
    started = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "ray_adlf.cli", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env=NO_GPU,
    )
    elapsed = time.monotonic() - started
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2, run.stderr
    assert len(lines) == 1 and lines[0].startswith("ray-adlf: error: "), run.stderr
    assert expected.format(tmp=tmp) in lines[0]
    assert "Traceback" not in run.stderr + run.stdout
    assert elapsed < ERROR_BUDGET_S, f"{elapsed:.2f} s"
    assert not (tmp_path / "out").exists()  # nothing written before the checks pass
