"""The SFT stage end to end on Ray Train: tiny model, bundled sample, one local Ray cluster.

One uninterrupted 2-worker run (3 epochs, 69 steps, a checkpoint every epoch) is the reference:
its held-out loss falls, its output loads and generates, and the runs that are stopped and
resumed, or lose a worker, must end with its weights. The README's example commands run as
subprocesses (``ray-adlf train`` and ``jobs/train.py``) against the same cluster.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import ray
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from ray_adlf.config import Config
from ray_adlf.data.prompts import critique_prompt, generation_prompt
from ray_adlf.data.records import Turn
from ray_adlf.preflight import check_train
from ray_adlf.stages import StageFailed
from ray_adlf.tracking import read_metrics
from ray_adlf.train.common import stage_run_dir
from ray_adlf.train.pipeline import run_pipeline

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
STEPS_PER_EPOCH = 23  # 360 training records / (8 per worker x 2 workers)


def planned(cfg: Config) -> tuple:
    """``run_pipeline``'s arguments, as ``ray-adlf train`` makes them."""
    return cfg, check_train(cfg)


def readme_examples() -> dict[str, list[str]]:
    """The ``ray-adlf train`` example commands of README.md, by the comment above each."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = text.split("Examples on the bundled data:", 1)[1].split("```bash", 1)[1]
    block = block.split("```", 1)[0].replace("\\\n", " ")
    examples, name = {}, None
    for line in block.splitlines():
        if line.startswith("#"):
            name = line[1:].split(":")[0].strip()
        elif line.startswith("ray-adlf train"):
            args = line.split()[2:]
            cut = args.index("--output_dir")
            examples[name] = args[:cut] + args[cut + 2 :]
    return examples


@pytest.fixture(scope="module")
def ray_address():
    with pytest.MonkeyPatch.context() as env:
        # The Train controller collects reported checkpoints when it polls the workers (every
        # 2 s by default); poll often so the kill test's checkpoint is registered quickly.
        env.setenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
        ray.init(address="local", num_cpus=4, include_dashboard=False)
        yield ray.get_runtime_context().gcs_address
        ray.shutdown()


def sft_config(output_dir: Path, **run) -> Config:
    cfg = Config()
    cfg.data.max_seq_length = 128
    cfg.sft.run_sft = True
    cfg.sft.sft_epochs = 3
    cfg.sft.sft_batch_size = 8
    cfg.sft.sft_learning_rate = 1e-3
    cfg.run.output_dir = str(output_dir)
    cfg.resources.num_workers = 2
    cfg.run.checkpoint_every = STEPS_PER_EPOCH
    for key, value in run.items():
        setattr(cfg.run, key, value)
    return cfg


@pytest.fixture(scope="module")
def reference(ray_address, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("sft") / "reference"
    return output_dir, run_pipeline(*planned(sft_config(output_dir)))


def weights(output_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(output_dir / "model.safetensors")


def assert_same_weights(output_dir: Path, reference_dir: Path) -> None:
    got, want = weights(output_dir), weights(reference_dir)
    assert got.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=0, atol=1e-6, msg=name)


def rows(output_dir: Path, key: str) -> dict[int, float]:
    return {r["step"]: r[key] for r in read_metrics(output_dir / "metrics.jsonl") if key in r}


def generate(output_dir: Path, prompt: str) -> str:
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    model = AutoModelForCausalLM.from_pretrained(output_dir)
    inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    out = model.generate(**inputs, max_new_tokens=16, do_sample=False)
    new_tokens = out[0, inputs["input_ids"].shape[1] :]
    assert len(new_tokens) >= 1
    return tokenizer.decode(new_tokens)


def test_two_workers_loss_falls_on_held_out_split(reference):
    output_dir, summary = reference
    assert summary["sft"]["complete"] and summary["sft"]["step"] == 3 * STEPS_PER_EPOCH
    eval_loss = rows(output_dir, "eval_loss")
    assert sorted(eval_loss) == [0, 23, 46, 69]
    assert eval_loss[STEPS_PER_EPOCH] < eval_loss[0] - 1.0  # one epoch
    assert eval_loss[69] < eval_loss[STEPS_PER_EPOCH]
    for name in (
        "README.md",
        "config.yaml",
        "report.md",
        "plots/sft_loss.png",
        "plots/sft_learning_rate.png",
        "plots/sft_objectives.png",
    ):
        assert (output_dir / name).exists(), name


def test_output_loads_and_generates(reference):
    output_dir, _ = reference
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    model = AutoModelForCausalLM.from_pretrained(output_dir)
    assert model.generation_config.eos_token_id == [tokenizer.convert_tokens_to_ids("<|end|>")]
    prompt = generation_prompt([Turn("user", "What is 2 plus 2?")], tokenizer, "standard", None)
    generate(output_dir, prompt)


def test_resume_matches_an_uninterrupted_run(reference, tmp_path):
    output_dir = tmp_path / "stopped"
    first = run_pipeline(*planned(sft_config(output_dir, stop_after_steps=30)))  # mid-epoch 2
    assert not first["sft"]["complete"] and first["sft"]["step"] == 30
    assert not (output_dir / "model.safetensors").exists()
    second = run_pipeline(*planned(sft_config(output_dir, resume=True)))
    assert second["sft"]["complete"] and second["sft"]["resumed"]
    assert rows(output_dir, "resumed_from_step") == {30: 30}
    assert sorted(rows(output_dir, "loss")) == list(range(1, 70))
    assert_same_weights(output_dir, reference[0])


def last_logged_step(output_dir: Path) -> int:
    path = output_dir / "metrics.jsonl"
    return max((r["step"] for r in read_metrics(path)), default=0) if path.exists() else 0


def registered_checkpoints(run_dir: Path) -> str:
    """The Train controller's record of the checkpoints it has registered (JSON text)."""
    snapshot = run_dir / "checkpoint_manager_snapshot.json"
    return snapshot.read_text() if snapshot.exists() else ""


def settled_checkpoints(run_dir: Path, quiet_s: float = 3.0) -> str:
    """``registered_checkpoints`` once it has not changed for ``quiet_s``: the killed driver's
    Train controller is an actor of the cluster and may still register the checkpoint its
    workers reported in the moments after the driver died."""
    seen, since = registered_checkpoints(run_dir), time.monotonic()
    while time.monotonic() - since < quiet_s:
        time.sleep(0.1)
        now = registered_checkpoints(run_dir)
        if now != seen:
            seen, since = now, time.monotonic()
    return seen


def train_workers() -> list[psutil.Process]:
    """This test cluster's Ray Train worker processes."""
    found = []
    for process in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "RayTrainWorker" in " ".join(process.cmdline()):
                found.append(process)
    return found


def test_killed_worker_restarts_from_the_last_checkpoint(reference, tmp_path):
    output_dir = tmp_path / "killed"
    cfg = sft_config(output_dir, max_failures=1)
    first_checkpoint = f"step_{STEPS_PER_EPOCH:06d}"
    killed: list[tuple[int, int]] = []

    def kill_one_worker_after_the_first_checkpoint():
        deadline = time.time() + 300
        run_dir = stage_run_dir(cfg, "sft")
        while first_checkpoint not in registered_checkpoints(run_dir) and time.time() < deadline:
            time.sleep(0.02)
        for process in train_workers()[:1]:
            process.kill()
            killed.append((process.pid, last_logged_step(output_dir)))
            print(f"killed training worker pid {process.pid} after step {killed[0][1]}")

    killer = threading.Thread(target=kill_one_worker_after_the_first_checkpoint, daemon=True)
    killer.start()
    summary = run_pipeline(*planned(cfg))
    killer.join()
    assert killed and STEPS_PER_EPOCH <= killed[0][1] < 3 * STEPS_PER_EPOCH  # mid-run
    assert summary["sft"]["complete"]
    assert rows(output_dir, "resumed_from_step") == {STEPS_PER_EPOCH: STEPS_PER_EPOCH}
    assert_same_weights(output_dir, reference[0])


def sft_command(output_dir: Path) -> list[str]:
    """``ray-adlf train`` with the flags of ``sft_config(output_dir)``, W&B on (offline)."""
    return [
        *(sys.executable, "-m", "ray_adlf.cli", "train", "--run_sft", "--use_wandb"),
        *("--max_seq_length", "128", "--sft_epochs", "3", "--sft_batch_size", "8"),
        *("--sft_learning_rate", "1e-3", "--num_workers", "2"),
        *("--checkpoint_every", str(STEPS_PER_EPOCH), "--output_dir", str(output_dir)),
    ]


@pytest.mark.slow
def test_driver_killed_during_a_checkpoint_write_reruns_to_the_same_model(
    reference, ray_address, tmp_path
):
    output_dir = tmp_path / "driver"
    command, env = sft_command(output_dir), {**os.environ, "RAY_ADDRESS": ray_address}
    run_dir = stage_run_dir(sft_config(output_dir), "sft")
    second_checkpoint = run_dir / f"step_{2 * STEPS_PER_EPOCH:06d}"
    with (tmp_path / "killed.log").open("w") as log:
        driver = subprocess.Popen(command, env=env, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + 300
        while not second_checkpoint.exists():  # Ray Train has begun to write it
            assert driver.poll() is None and time.monotonic() < deadline, "no second checkpoint"
            time.sleep(0.002)
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    registered = settled_checkpoints(run_dir)
    resume_step = 2 * STEPS_PER_EPOCH if second_checkpoint.name in registered else STEPS_PER_EPOCH
    assert f"step_{STEPS_PER_EPOCH:06d}" in registered
    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert rows(output_dir, "resumed_from_step") == {resume_step: resume_step}
    steps = [r["step"] for r in read_metrics(output_dir / "metrics.jsonl") if "loss" in r]
    assert steps == list(range(1, 70))  # every step once: nothing lost, nothing twice
    assert_same_weights(output_dir, reference[0])
    wandb_runs = sorted((output_dir / "wandb").glob("offline-run-*"))
    assert len(wandb_runs) == 2 and len({run.name.rsplit("-", 1)[1] for run in wandb_runs}) == 1


FILE_SIZE_LIMIT = 2**20  # bytes; the tiny model's weights (1.8 MB) cannot be written under it


def test_a_full_disk_fails_the_run_clearly_and_the_last_checkpoint_still_resumes(
    reference, tmp_path
):
    output_dir = tmp_path / "full"
    first = run_pipeline(*planned(sft_config(output_dir, stop_after_steps=30)))
    assert first["sft"]["step"] == 30
    limited: set[int] = set()

    def limit_the_file_size_of_each_new_worker():
        deadline = time.monotonic() + 300
        while len(limited) < 2 and time.monotonic() < deadline:
            for process in train_workers():
                with contextlib.suppress(psutil.Error, ProcessLookupError):
                    limit = (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT)
                    resource.prlimit(process.pid, resource.RLIMIT_FSIZE, limit)
                    limited.add(process.pid)
            time.sleep(0.01)

    limiter = threading.Thread(target=limit_the_file_size_of_each_new_worker, daemon=True)
    limiter.start()
    with pytest.raises(StageFailed, match="File too large"):
        run_pipeline(*planned(sft_config(output_dir, resume=True, max_failures=0)))
    limiter.join()
    assert len(limited) == 2
    assert f"step_{2 * STEPS_PER_EPOCH:06d}" not in registered_checkpoints(
        stage_run_dir(sft_config(output_dir), "sft")
    )
    last = run_pipeline(*planned(sft_config(output_dir, resume=True)))
    assert last["sft"]["complete"] and last["sft"]["resumed"]
    assert rows(output_dir, "resumed_from_step") == {30: 30}
    assert_same_weights(output_dir, reference[0])


def test_readme_example_commands(ray_address, tmp_path):
    env = {**os.environ, "RAY_ADDRESS": ray_address}
    examples = readme_examples()
    assert set(examples) == {"basic", "advanced"}
    commands = {  # the advanced one also exercises W&B (offline) inside the Ray workers
        "basic": [sys.executable, "-m", "ray_adlf.cli", "train", *examples["basic"]],
        "advanced": [
            sys.executable,
            str(REPO / "jobs" / "train.py"),
            *examples["advanced"],
            "--use_wandb",
        ],
    }
    running = {
        name: subprocess.Popen(
            [*command, "--output_dir", str(tmp_path / name)],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name, command in commands.items()
    }
    for name, process in running.items():
        output, _ = process.communicate(timeout=600)
        assert process.returncode == 0, f"{name}:\n{output[-3000:]}"

    basic = tmp_path / "basic"
    prompt = generation_prompt(
        [Turn("user", "Hi")], AutoTokenizer.from_pretrained(basic), "standard", None
    )
    generate(basic, prompt)

    advanced = tmp_path / "advanced"
    tokenizer = AutoTokenizer.from_pretrained(advanced)
    context = [Turn("user", "What is the capital of Peru?")]
    generate(advanced, generation_prompt(context, tokenizer, "role_markers", 5.0))
    generate(
        advanced, critique_prompt([*context, Turn("assistant", "Lima.")], tokenizer, "role_markers")
    )
    last = read_metrics(advanced / "metrics.jsonl")
    logged = {key for row in last for key in row}
    assert {"lm_loss", "critique_loss", "contrastive_loss", "eval_critique_loss"} <= logged
    assert list((advanced / "wandb").glob("offline-run-*"))
    assert "self-critique (weight 0.3)" in (advanced / "sft" / "README.md").read_text()
    # the advanced example also ran the reward model and RLHF: the final policy is RLHF's
    assert "RLHF with ADLF rewards" in (advanced / "README.md").read_text()
    assert (advanced / "reward_model" / "config.json").is_file()
    assert {"reward", "kl", "beta", "ppo/clip_fraction"} <= logged
