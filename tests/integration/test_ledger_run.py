"""The ledger of a real run, and ``ray-adlf inspect`` on it, with a planted reward hack.

Conversations answer "Capital of X?" with the city and, in 40% of them, 1-12 filler words; the
human score falls with every filler word (5 for none, 0 for twelve). SFT on them gives a policy
that mostly answers short; the reward model learns "padding is bad". The RL stage's reward is 80% a
plugin that pays for words (``plugin.py``) and 20% the reward model: the policy pads more,
the plugin's part rises and the external reward falls, so ``inspect`` must warn. Two learner
ranks, so each round's per-sample learner values are gathered from both; W&B offline.
"""

import json
import random
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import ray
from matplotlib.image import imread

from ray_adlf.cli import main
from ray_adlf.config import Config, validate
from ray_adlf.data.records import split_records
from ray_adlf.data.validate import read_records
from ray_adlf.ledger.schema import FIXED
from ray_adlf.ledger.store import read_ledger, recorded_rounds
from ray_adlf.report import write_report
from ray_adlf.tracking import read_metrics
from ray_adlf.train.ppo import run_rlhf
from ray_adlf.train.reward_model import run_reward_model
from ray_adlf.train.sft import run_sft

pytestmark = pytest.mark.integration
ROUNDS, PROMPTS, SAMPLES = 10, 8, 4
CAPITALS = {"France": "Paris", "Spain": "Madrid", "Italy": "Rome", "Japan": "Tokyo"}
CAPITALS |= {"Peru": "Lima", "Kenya": "Nairobi", "Norway": "Oslo", "Egypt": "Cairo"}
FILLER = ["well", "you", "know", "it", "is", "as", "I", "said", "before", "and", "so", "on"]
SHORT = 0.6  # of the answers unpadded: the SFT policy starts short, with a high external reward
PLUGIN = "def words(contexts, responses):\n    return [min(1.0, len(r.split()) / 16) for r in responses]\n"


def write_padded_answers(path: Path, rows: int, seed: int) -> None:
    rng = random.Random(seed)
    with path.open("w") as out:
        for _ in range(rows):
            country = rng.choice(list(CAPITALS))
            padding = 0 if rng.random() < SHORT else rng.randrange(1, len(FILLER) + 1)
            answer = " ".join([f"{CAPITALS[country]}.", *FILLER[:padding]])
            conversation = [
                {"role": "user", "content": f"Capital of {country}?"},
                {"role": "assistant", "content": answer},
            ]
            score = round(5 - 5 * padding / len(FILLER), 3)
            out.write(json.dumps({"conversation": conversation, "meta_eval_score": score}) + "\n")


def hack_config(root: Path) -> Config:
    cfg = Config()
    cfg.data.data_path = str(root / "data.jsonl")
    cfg.data.max_seq_length = 64
    cfg.sft.run_sft = True
    cfg.sft.sft_epochs = 4
    cfg.sft.sft_learning_rate = 3e-3
    cfg.reward_model.run_reward_model = True
    cfg.reward_model.rm_epochs = 4
    cfg.reward_model.rm_learning_rate = 1e-3
    cfg.rollout.rollout_engine = "hf"
    cfg.rollout.max_new_tokens = 24
    cfg.resources.rollout_num_cpus = 0.5
    cfg.resources.reward_num_cpus = 0.25
    cfg.rewards.adlf_alpha = 0.8
    cfg.rewards.use_fluency_reward = False
    cfg.rewards.reward_plugin = f"{root / 'plugin.py'}:words"
    cfg.ppo.run_rlhf = True
    cfg.ppo.rl_rounds = ROUNDS
    cfg.ppo.advantage = "grpo"
    cfg.ppo.num_samples_per_prompt = SAMPLES
    cfg.ppo.ppo_batch_size = PROMPTS
    cfg.ppo.ppo_minibatch_size = 16
    cfg.ppo.ppo_learning_rate = 5e-4
    cfg.ppo.init_kl_coef = 0.02
    cfg.resources.num_workers = 2
    cfg.run.use_wandb = True  # offline: tests/conftest.py sets WANDB_MODE
    cfg.run.output_dir = str(root / "run")
    cfg.run.checkpoint_every = 4
    return validate(cfg)


@pytest.fixture(scope="module")
def hacked_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("hack")
    write_padded_answers(root / "data.jsonl", 240, seed=0)
    (root / "plugin.py").write_text(PLUGIN)
    cfg = hack_config(root)
    train, held_out = split_records(read_records(cfg.data.data_path).records, 0.1, 0)
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    try:
        sft = run_sft(cfg, train, held_out)
        rm = run_reward_model(cfg, train, held_out)
        summary = run_rlhf(cfg, train, sft["path"], rm["path"])
    finally:
        ray.shutdown()
    assert summary["complete"]
    return Path(cfg.run.output_dir)


def test_one_row_per_sample_per_round_that_agrees_with_the_rounds_metrics(hacked_run):
    assert recorded_rounds(hacked_run / "rollouts") == list(range(1, ROUNDS + 1))
    table = read_ledger(hacked_run)
    assert table.column_names[: len(FIXED.names)] == FIXED.names
    assert {"part_external", "part_plugin", "part_internal"} <= set(table.column_names)
    metrics = {r["step"]: r for r in read_metrics(hacked_run / "metrics.jsonl")}
    data = json.loads(json.dumps(table.to_pylist()))
    lines = (hacked_run.parent / "data.jsonl").read_text().splitlines()
    for r in range(1, ROUNDS + 1):
        rows = [row for row in data if row["round"] == r]
        assert [row["sample"] for row in rows] == list(range(PROMPTS * SAMPLES))
        assert {row["policy_version"] for row in rows} == {r - 1}
        assert [row["group"] for row in rows] == [i // SAMPLES for i in range(len(rows))]
        for key, column in (("reward", "reward"), ("plugin", "part_plugin"), ("kl", "kl")):
            mean = np.mean([row[column] for row in rows])
            assert mean == pytest.approx(metrics[r][key], abs=1e-6), (r, key)
        mismatch = np.mean([abs(row["engine_logprob"] - row["learner_logprob"]) for row in rows])
        assert mismatch < 1e-3  # synchronous rounds: the engine sampled the learner's policy
        for g in range(PROMPTS):  # GRPO: each group's advantages sum to about zero
            group = [row for row in rows if row["group"] == g]
            assert abs(sum(row["advantage"] for row in group)) < 1e-3 or all(
                row["advantage"] == 0 for row in group
            )
            assert len({row["prompt_id"] for row in group}) == 1
        for row in rows:
            number = int(row["prompt_id"].removeprefix("data.jsonl:"))
            question = json.loads(lines[number - 1])["conversation"][0]["content"]
            assert row["prompt"] == f"user: {question}" and row["turn"] == 1
            assert 1 <= row["response_tokens"] <= 24 and row["finish_reason"] in ("stop", "length")
            assert row["alpha"] == 0.8


def test_inspect_warns_of_the_planted_hack(hacked_run, capsys):
    assert main(["inspect", str(hacked_run), "--sort", "plugin", "--top", "2"]) == 0
    out = capsys.readouterr().out
    warnings = [line for line in out.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, out
    assert "plugin rises" in warnings[0] and "external falls" in warnings[0]
    assert f"top 2 by plugin in round {ROUNDS}" in out and "mean ± std by round" in out
    assert main(["inspect", str(hacked_run), "--sort", "nope"]) == 2
    assert "--sort nope: not a part of this ledger" in capsys.readouterr().err


def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        pytest.fail("needs Debian's chromium (scripts/test.sh installs it)")
    return found


def browse(url: str, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", *flags, url],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def test_the_html_page_shows_plots_and_a_sortable_table_in_chromium(hacked_run, tmp_path):
    page = tmp_path / "page.html"
    assert main(["inspect", str(hacked_run), "--html", str(page)]) == 0
    sorted_page = f"{page.as_uri()}#sort=plugin:asc"
    dom = browse(sorted_page, "--virtual-time-budget=5000", "--dump-dom").stdout
    assert dom.count('data-rendered="true"') == 3  # every plot decoded (no debate: 3)
    body = dom.split('<table id="samples">')[1]
    assert body.count("<tr>") == 1 + ROUNDS * PROMPTS * SAMPLES
    headers = body.split("</thead>")[0]
    assert '<th data-column="part_plugin" data-numeric="true" aria-sort="ascending">' in headers
    columns = [h.split('"')[0] for h in headers.split('data-column="')[1:]]
    plugin = columns.index("part_plugin")
    values = [
        float(row.split('data-value="')[plugin + 1].split('"')[0])
        for row in body.split("</thead>")[1].split("<tr>")[1:]
    ]
    assert values == sorted(values) and values[0] < values[-1]
    shot = tmp_path / "shot.png"
    browse(page.as_uri(), "--window-size=1400,2400", f"--screenshot={shot}")
    pixels = imread(shot)
    assert pixels.shape[:2] == (2400, 1400)
    plots_band, table_band = pixels[150:600], pixels[-500:]  # plots at the top, the table below
    assert plots_band.std() > 0.05 and table_band.std() > 0.05


def test_wandb_gets_the_rows_as_a_table_each_recorded_round(hacked_run):
    tables = sorted(hacked_run.glob("wandb/offline-run-*/files/media/table/rlhf/rollouts_*.json"))
    assert len(tables) == ROUNDS
    first = json.loads(tables[0].read_text())
    assert len(first["data"]) == PROMPTS * SAMPLES
    parquet = pq.read_table(hacked_run / "rollouts" / "round-000001.parquet")
    assert first["columns"] == parquet.column_names
    response = parquet.column_names.index("response")
    assert [row[response] for row in first["data"]] == parquet.column("response").to_pylist()


def test_the_report_links_the_ledger_and_plots_the_part_correlation(hacked_run):
    report = write_report(hacked_run, hacked_run / "metrics.jsonl", "run", []).read_text()
    assert "[`rollouts/`](rollouts/)" in report and "plugin rises" in report
    assert "![rlhf_part_correlation.png](plots/rlhf_part_correlation.png)" in report
    assert imread(hacked_run / "plots" / "rlhf_part_correlation.png").shape[1] == 700
    assert pq.read_table(hacked_run / "rollouts" / "round-000001.parquet").num_rows == 32
