"""The reward-model stage on Ray Train with the tiny model and the bundled sample, whose score
is a learnable function of the text: a session stopped after 30 steps, resumed to the end;
held-out rank correlation well above 0; a model that loads with
AutoModelForSequenceClassification."""

import json
from pathlib import Path

import numpy as np
import pytest
import ray
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from ray_adlf.config import Config, validate
from ray_adlf.data.records import Turn, split_last_assistant, split_records
from ray_adlf.data.sample import sample_path
from ray_adlf.data.validate import read_records
from ray_adlf.rewards.reward_model import predict, regression_metrics, reward_model_ids
from ray_adlf.train.reward_model import run_reward_model

pytestmark = pytest.mark.integration


def metrics_file(cfg: Config) -> Path:
    return Path(cfg.run.output_dir) / "metrics.jsonl"


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def trained(cluster, tmp_path_factory):
    cfg = Config()
    cfg.data.data_path = str(sample_path())
    cfg.data.max_seq_length = 128
    cfg.model.model_name = "tiny"
    cfg.reward_model.run_reward_model = True
    cfg.reward_model.rm_init = "base"
    cfg.reward_model.rm_epochs = 2
    cfg.reward_model.rm_batch_size = 8
    cfg.reward_model.rm_learning_rate = 1e-3
    cfg.run.output_dir = str(tmp_path_factory.mktemp("rm") / "run")
    cfg.run.checkpoint_every = 1000
    validate(cfg)
    cfg.run.stop_after_steps = 30
    records = read_records(sample_path()).records
    train, held_out = split_records(records, cfg.data.eval_fraction, cfg.run.seed)
    stopped = run_reward_model(cfg, train, held_out)
    cfg.run.stop_after_steps = 0
    summary = run_reward_model(cfg, train, held_out)  # the same command continues the run
    return cfg, stopped, summary, held_out


def test_a_stopped_session_resumes_to_the_end(trained):
    cfg, stopped, summary, _ = trained
    assert not stopped["complete"] and stopped["step"] == 30 and "path" not in stopped
    assert summary["resumed"] and summary["complete"]
    assert summary["step"] == summary["max_steps"] == stopped["max_steps"]
    rows = [json.loads(line) for line in metrics_file(cfg).read_text().splitlines()]
    steps = [row["step"] for row in rows if row["stage"] == "reward_model" and "loss" in row]
    assert steps == sorted(set(steps)) and steps[-1] == summary["step"]  # one uninterrupted run


def test_reward_model_learns_the_score(trained):
    cfg, _, summary, held_out = trained
    print(summary)
    assert summary["eval_spearman"] > 0.3, summary
    assert summary["eval_pairwise_accuracy"] > 0.6, summary
    assert 0.0 <= summary["eval_mae"] < 1.5
    assert -1.0 <= summary["eval_pearson"] <= 1.0
    rows = [json.loads(line) for line in metrics_file(cfg).read_text().splitlines()]
    assert any(row["stage"] == "reward_model" and "eval_spearman" in row for row in rows)


def test_output_loads_with_auto_model_for_sequence_classification(trained):
    cfg, _, summary, held_out = trained
    path = summary["path"]
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert model.config.num_labels == 1
    rows, targets = [], []
    for record in held_out:
        context, response = split_last_assistant(record)
        rows.append(reward_model_ids(context, response.content, tokenizer, "standard", 128))
        targets.append(record.score)
    predicted = 5 * predict(model, rows, tokenizer.pad_token_id)
    metrics = regression_metrics(predicted, np.array(targets))
    assert metrics["spearman"] == pytest.approx(summary["eval_spearman"], abs=1e-4)
    ids = reward_model_ids([Turn("user", "What is 2 plus 2?")], "4.", tokenizer, "standard", 128)
    assert model(input_ids=torch.tensor([ids])).logits.shape == (1, 1)
