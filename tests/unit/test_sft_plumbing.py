"""Run plumbing without Ray: resume rules, CPU shares, outputs, metrics file, W&B mode, report."""

import json
import logging

import pytest

from ray_adlf.config import Config, ConfigError, validate
from ray_adlf.report import metric_series, write_report
from ray_adlf.tracking import MetricsFile, read_metrics, start_tracker, wandb_mode, wandb_run_id
from ray_adlf.train.common import (
    precision,
    prepare_stage_run,
    stage_run_dir,
    write_model_outputs,
)


def config(tmp_path, **run) -> Config:
    cfg = Config()
    cfg.run.output_dir = str(tmp_path / "out")
    for key, value in run.items():
        setattr(cfg.run, key, value)
    return cfg


def test_precision_choices():
    cfg = Config()
    assert precision(cfg) == "fp32"
    cfg.run.bf16 = True
    assert precision(cfg) == "bf16"
    cfg.run.bf16, cfg.run.fp16 = False, True
    with pytest.raises(ConfigError, match="--fp16: needs --use_gpu"):
        validate(cfg)
    cfg.resources.use_gpu = True
    assert precision(validate(cfg)) == "fp16"


def test_run_name_resume_rules(tmp_path):
    cfg = config(tmp_path)
    with pytest.raises(ConfigError, match="--resume: no sft run 'out-sft'"):
        prepare_stage_run(config(tmp_path, resume=True), "sft")
    assert prepare_stage_run(cfg, "sft") is False
    assert stage_run_dir(cfg, "sft") == tmp_path / "out" / "ray_train" / "out-sft"
    cfg.run.checkpoint_every, cfg.run.stop_after_steps = 7, 3  # allowed to differ
    assert prepare_stage_run(cfg, "sft") is True
    cfg.sft.sft_epochs, cfg.run.seed = 9, 1
    with pytest.raises(ConfigError, match=r"--sft_epochs: 3 -> 9; --seed: 0 -> 1"):
        prepare_stage_run(cfg, "sft")
    cfg.run.run_name = "other"
    assert prepare_stage_run(cfg, "sft") is False


def test_model_outputs_leave_the_training_state_behind(tmp_path):
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    names = [
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "optimizer.pt",
        "scheduler.pt",
        "rng_state_1.pth",
        "trainer_state.json",
        "training_args.bin",
    ]
    for name in names:
        (checkpoint / name).write_text(name)
    cfg = config(tmp_path)
    out = write_model_outputs(checkpoint, cfg, "# card\n")
    assert sorted(p.name for p in out.iterdir()) == [
        ".ray_adlf_complete",  # written last: the output is finished
        "README.md",
        "config.json",
        "config.yaml",
        "model.safetensors",
        "tokenizer.json",
    ]


def test_metrics_file_truncates_only_its_stage(tmp_path):
    path = tmp_path / "metrics.jsonl"
    MetricsFile(path, "rm").append({"loss": 9.0}, step=50)
    sft = MetricsFile(path, "sft")
    for step in range(1, 6):
        sft.append({"loss": 1.0 / step}, step)
    sft.truncate_after(3)
    rows = read_metrics(path)
    assert [(r["stage"], r["step"]) for r in rows] == [
        ("rm", 50),
        ("sft", 1),
        ("sft", 2),
        ("sft", 3),
    ]


def test_wandb_mode(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_mode() == ("disabled", "WANDB_MODE is set")
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    assert wandb_mode() == ("offline", "no W&B API key (WANDB_API_KEY or netrc)")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setattr("ray_adlf.tracking._reachable", lambda host: False)
    assert wandb_mode() == ("offline", "api.wandb.ai is not reachable")
    assert wandb_run_id(tmp_path, "a", "sft") == wandb_run_id(tmp_path, "a", "sft")
    assert wandb_run_id(tmp_path, "a", "sft") != wandb_run_id(tmp_path, "b", "sft")


def test_tracker_writes_jsonl_and_an_offline_wandb_run(monkeypatch, tmp_path, caplog):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="ray_adlf.tracking"):
        tracker = start_tracker(
            tmp_path / "metrics.jsonl",
            "sft",
            0,
            tmp_path,
            "run",
            {"a": 1},
            use_wandb=True,
            wandb_project="test",
        )
    tracker.log({"loss": 2.0}, step=1)
    tracker.close()
    assert [r.message for r in caplog.records if "offline" in r.message] == [
        f"W&B: offline mode (no W&B API key (WANDB_API_KEY or netrc)); sync later with "
        f"`wandb sync {tmp_path}/wandb`"
    ]
    assert read_metrics(tmp_path / "metrics.jsonl")[0]["loss"] == 2.0
    assert list((tmp_path / "wandb").glob("offline-run-*"))


def test_report_plots_and_tables(tmp_path):
    path = tmp_path / "metrics.jsonl"
    rows = [
        {"stage": "sft", "step": 0, "eval_loss": 7.0, "eval_lm_loss": 7.0},
        {"stage": "sft", "step": 1, "loss": 6.0, "lm_loss": 6.0, "learning_rate": 1e-3},
        {"stage": "sft", "step": 2, "loss": 9.0, "lm_loss": 9.0, "learning_rate": 1e-3},
        {"stage": "sft", "step": 2, "loss": 5.0, "lm_loss": 5.0, "learning_rate": 1e-3},
        {"stage": "sft", "step": 2, "eval_loss": 4.5, "eval_lm_loss": 4.5},
        {"stage": "sft", "step": 2, "train_loss": 5.5},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert metric_series(rows, "sft", "loss") == [(1, 6.0), (2, 5.0)]  # the re-run step wins
    report = write_report(tmp_path, path, "run x", ["sft: complete"])
    text = report.read_text()
    assert "- sft: complete" in text and "| eval_loss | 7 (0) | 4.5 (2) |" in text
    for name in ("sft_loss.png", "sft_learning_rate.png", "sft_objectives.png"):
        assert (tmp_path / "plots" / name).stat().st_size > 1000
        assert f"![{name}](plots/{name})" in text
