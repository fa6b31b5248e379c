"""Ray Tune over the RL stage on the tiny model: ASHA and PBT searches, and a resumed search.

One preparation (reward model + evaluation reward model, no SFT) is shared by every test.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray

from ray_adlf.cli import build_parser
from ray_adlf.config import Config, config_from_args, load_yaml, validate
from ray_adlf.preflight import read_data
from ray_adlf.tune import prepare, run_tune
from ray_adlf.tune_plan import TuneOptions, search_config

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
PLUGIN = f"{Path(__file__).parent / 'plugins' / 'digits.py'}:digit_share"
FLAGS = {
    "data_path": "sample",
    "max_seq_length": 96,
    "rm_epochs": 1,
    "rollout_engine": "hf",
    "rollout_num_cpus": 0.25,
    "max_new_tokens": 8,
    "adlf_alpha": 0.5,
    "use_fluency_reward": False,
    "reward_plugin": PLUGIN,
    "reward_num_cpus": 0.25,
    "ppo_batch_size": 8,
    "ppo_minibatch_size": 8,
    "ppo_epochs": 1,
    "ppo_learning_rate": 3e-3,
    "eval_prompts": 4,
    "learner_num_cpus": 0.25,
}


def tune_config(output_dir: Path, run: str) -> Config:
    cfg = Config()
    for flag, value in FLAGS.items():
        for section in vars(cfg).values():
            if hasattr(section, flag):
                setattr(section, flag, value)
    cfg.run.output_dir = str(output_dir)
    cfg.run.run_name = run
    return validate(cfg)


def cli_flags(output_dir: Path, run: str) -> list[str]:
    flags = [f"--output_dir={output_dir}", f"--run_name={run}"]
    for flag, value in FLAGS.items():
        flags.append(f"--{flag}" if value is True else f"--{flag}={value}")
    return [f.replace("--use_fluency_reward=False", "--no-use_fluency_reward") for f in flags]


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    output_dir = tmp_path_factory.mktemp("tune")
    records = read_data(tune_config(output_dir, "prep"))
    prepare(search_config(tune_config(output_dir, "prep"), 2), *records)
    yield output_dir, records
    ray.shutdown()


def search(shared, run: str, space: str, scheduler: str, rounds: int) -> dict:
    output_dir, records = shared
    options = TuneOptions(space, num_samples=2, scheduler=scheduler, rounds_per_trial=rounds)
    return run_tune(tune_config(output_dir, run), options, *records)


def check_outputs(outputs: dict, trials: int) -> None:
    assert outputs["trials"] == trials
    cfg = validate(load_yaml(outputs["best_config"]))
    assert cfg.ppo.run_rlhf
    for flag, value in outputs["best"].items():
        assert getattr(cfg.rewards if flag == "adlf_alpha" else cfg.ppo, flag) == pytest.approx(
            value
        )
    args = build_parser().parse_args(["train", "--config", outputs["best_config"]])
    assert config_from_args(args) == cfg
    assert Path(outputs["report"]).is_file() and (Path(outputs["report"]).parent / "objective.png")
    rows = Path(outputs["results"]).read_text().splitlines()
    assert len(rows) == trials + 1 and "eval/objective" in rows[0]


def test_asha_search_returns_a_trainable_best_config(shared):
    outputs = search(shared, "asha", str(ROOT / "tune_spaces" / "adlf_alpha.py"), "asha", 2)
    check_outputs(outputs, 2)


def test_pbt_search_over_alpha_and_kl_target(shared, tmp_path):
    space = tmp_path / "space.py"
    space.write_text(
        "from ray import tune\n\n\ndef space():\n"
        "    return {'adlf_alpha': tune.uniform(0, 1), 'kl_target': tune.uniform(0.5, 5)}\n"
    )
    outputs = search(shared, "pbt", str(space), "pbt", 3)
    check_outputs(outputs, 2)


def test_search_resumes_after_the_driver_dies(shared):
    run = "restore"
    command = [
        sys.executable,
        str(ROOT / "jobs" / "tune.py"),
        f"--space={ROOT / 'tune_spaces' / 'adlf_alpha.py'}",
        "--num_samples=2",
        "--scheduler=fifo",
        "--rounds_per_trial=2",
        *cli_flags(shared[0], run),
    ]
    driver = subprocess.Popen(command, cwd=ROOT, start_new_session=True)
    experiment = shared[0] / "ray_tune" / f"{run}-tune"
    deadline = time.monotonic() + 240
    while not any(p.stat().st_size for p in experiment.glob("*/result.json")):
        assert driver.poll() is None and time.monotonic() < deadline, "no trial result"
        time.sleep(1)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    outputs = search(shared, run, str(ROOT / "tune_spaces" / "adlf_alpha.py"), "fifo", 2)
    check_outputs(outputs, 2)
