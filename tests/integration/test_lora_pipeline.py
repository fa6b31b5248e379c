"""LoRA end to end on Ray: SFT -> reward model -> PPO, each stage training an adapter.

The SFT and reward-model outputs hold adapters only; each later stage merges what it starts
from once (``OUT/<stage>/merged``). PPO trains a fresh adapter on the merged SFT policy: its
reference is the policy with the adapter off (round 1's KL is 0), every sync sends the adapter
alone and is verified, the engine's logprobs equal the learner's, and a run stopped after two
rounds and resumed equals the uninterrupted one.
"""

from pathlib import Path

import pytest
import ray
import torch
from safetensors.torch import load_file

from ray_adlf.config import Config, validate
from ray_adlf.data.records import split_records
from ray_adlf.data.sample import sample_path
from ray_adlf.data.validate import read_records
from ray_adlf.models.loading import load_causal_lm
from ray_adlf.models.lora import ADAPTER_DIR, MERGED_DIR
from ray_adlf.tracking import read_metrics
from ray_adlf.train.ppo import run_rlhf
from ray_adlf.train.reward_model import run_reward_model
from ray_adlf.train.sft import run_sft

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROUNDS = 4


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def lora_config(output_dir: Path, **overrides) -> Config:
    cfg = Config()
    cfg.data.data_path = str(sample_path())
    cfg.data.max_seq_length = 96
    cfg.model.use_lora = True
    cfg.model.lora_r = 8
    cfg.sft.run_sft = True
    cfg.sft.sft_epochs = 1
    cfg.sft.sft_learning_rate = 1e-3
    cfg.reward_model.run_reward_model = True
    cfg.reward_model.rm_epochs = 1
    cfg.reward_model.rm_learning_rate = 1e-3
    cfg.rollout.rollout_engine = "hf"
    cfg.rollout.max_new_tokens = 12
    cfg.resources.rollout_num_cpus = 0.5
    cfg.resources.reward_num_cpus = 0.25
    cfg.ppo.run_rlhf = True
    cfg.ppo.rl_rounds = ROUNDS
    cfg.ppo.ppo_batch_size = 8
    cfg.ppo.ppo_minibatch_size = 4
    cfg.ppo.ppo_epochs = 2  # the learner recomputes old logprobs: parity is measured
    cfg.ppo.ppo_learning_rate = 3e-3
    cfg.ppo.tis_cap = 0.0  # the resumed run must equal the whole one: test_ppo.EXACT says why
    cfg.run.output_dir = str(output_dir)
    cfg.run.checkpoint_every = 1000
    for dotted, value in overrides.items():
        section, field = dotted.split("__")
        setattr(getattr(cfg, section), field, value)
    return validate(cfg)


@pytest.fixture(scope="module")
def stages(cluster, tmp_path_factory):
    root = tmp_path_factory.mktemp("lora")
    records = read_records(sample_path()).records[:48]
    train, held_out = split_records(records, 0.2, 0)
    cfg = lora_config(root / "base")
    sft = run_sft(cfg, train, held_out)
    rm = run_reward_model(cfg, train, held_out)
    whole = run_rlhf(lora_config(root / "whole"), train, sft["path"], rm["path"])
    pieces = root / "pieces"
    for stop_after in (2, 0):
        piece_cfg = lora_config(pieces, run__stop_after_steps=stop_after)
        piece_cfg.run.resume = (pieces / "ray_train").exists()
        resumed = run_rlhf(piece_cfg, train, sft["path"], rm["path"])
    return {"root": root, "sft": sft, "rm": rm, "whole": whole, "resumed": resumed}


def test_sft_and_reward_model_write_adapters_that_later_stages_merge(stages):
    for stage in ("sft", "rm"):
        output = Path(stages[stage]["path"])
        assert (output / ADAPTER_DIR / "adapter_model.safetensors").is_file()
        assert not (output / "config.json").exists()  # no --merge_lora: the adapter only
        assert "PeftModel.from_pretrained" in (output / "README.md").read_text()
    sft = Path(stages["sft"]["path"])
    assert (sft / MERGED_DIR / "config.json").is_file()  # written when the RM stage began
    trained = load_causal_lm(str(sft / MERGED_DIR)).state_dict()
    base = load_causal_lm("tiny").state_dict()
    changed = [name for name in base if not torch.equal(base[name], trained[name])]
    assert changed and all("proj" in name for name in changed)  # adapted linears, merged


def test_ppo_syncs_the_adapter_alone_verified_and_in_parity(stages):
    rows = [r for r in read_metrics(stages["root"] / "whole" / "metrics.jsonl")]
    rounds = sorted((r for r in rows if r["stage"] == "rlhf"), key=lambda r: r["step"])
    assert [r["step"] for r in rounds] == list(range(1, ROUNDS + 1))
    full = sum(t.numel() * t.element_size() for t in load_causal_lm("tiny").state_dict().values())
    for row in rounds:
        assert row["sync/verified"] == 1.0
        assert 0 < row["bytes/weights"] < 0.1 * full
        assert row["logprob_mismatch"] < 1e-4
    assert abs(rounds[0]["kl"]) < 1e-5  # the reference is the policy with its fresh adapter off
    assert any(abs(r["kl"]) > 1e-4 for r in rounds[1:])  # and the adapter then moves it
    output = Path(stages["whole"]["path"])
    assert (output / ADAPTER_DIR / "adapter_model.safetensors").is_file()


def test_a_resumed_lora_run_equals_the_uninterrupted_one(stages):
    whole, resumed = stages["whole"], stages["resumed"]
    assert resumed["complete"] and resumed["resumed"]
    root = stages["root"]
    by_step = {
        name: {r["step"]: r for r in read_metrics(root / name / "metrics.jsonl")}
        for name in ("whole", "pieces")
    }
    for step in (3, 4):
        for key in ("reward", "kl"):
            assert by_step["pieces"][step][key] == pytest.approx(
                by_step["whole"][step][key], abs=1e-6
            )
    adapters = [
        load_file(Path(run["path"]) / ADAPTER_DIR / "adapter_model.safetensors")
        for run in (whole, resumed)
    ]
    assert adapters[0].keys() == adapters[1].keys()
    for name, tensor in adapters[0].items():
        assert torch.allclose(tensor, adapters[1][name], atol=1e-6), name
