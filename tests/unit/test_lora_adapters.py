"""LoRA through PEFT on the tiny model: what a sync carries, the engine applying it, outputs."""

import json

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from ray_adlf.engines.base import SamplingParams
from ray_adlf.engines.hf import HFEngine
from ray_adlf.engines.weights import fingerprint_mismatches, weights_fingerprint
from ray_adlf.models.loading import load_causal_lm, load_tokenizer, resolve_model_path
from ray_adlf.models.lora import (
    ADAPTER_DIR,
    MERGED_DIR,
    LoraSettings,
    adapter_state_dict,
    add_lora,
    merged_model_path,
    save_lora_output,
)
from ray_adlf.models.policy import pack_sequences, response_forward
from ray_adlf.preflight import check_model

SETTINGS = LoraSettings(r=4, alpha=8.0, target_modules="q_proj,v_proj,down_proj")
PROMPTS = [[1, 20, 30, 40], [1, 50, 60]]


def trained_lora_policy(seed: int = 0):
    """The tiny policy with an adapter whose B is no longer zero (as after some training)."""
    policy = add_lora(load_causal_lm("tiny"), SETTINGS, "CAUSAL_LM")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in policy.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    return policy


def test_only_the_adapter_trains_and_syncs():
    policy = trained_lora_policy()
    adapter = adapter_state_dict(policy)
    # q_proj, v_proj, down_proj in each of 2 layers, an A and a B each.
    assert len(adapter) == 3 * 2 * 2 and all("lora_" in name for name in adapter)
    trainable = {n for n, p in policy.named_parameters() if p.requires_grad}
    assert len(trainable) == len(adapter)
    full = sum(t.numel() for t in load_causal_lm("tiny").state_dict().values())
    assert sum(t.numel() for t in adapter.values()) < 0.05 * full


def test_the_hf_engine_applies_a_synced_adapter_exactly():
    policy = trained_lora_policy().eval()
    engine = HFEngine("tiny", seed=0, device="cpu", lora=SETTINGS)
    before = engine.generate(PROMPTS, SamplingParams(temperature=0, max_new_tokens=12))
    engine.load_weights(adapter_state_dict(policy), 1)
    expected = weights_fingerprint(adapter_state_dict(policy))
    assert fingerprint_mismatches(expected, engine.fingerprint()) == []
    after = engine.generate(PROMPTS, SamplingParams(temperature=0, max_new_tokens=12))
    assert after.response_ids != before.response_ids  # the adapter reached the engine
    batch = pack_sequences(after.prompt_ids, after.response_ids, pad_id=0)
    with torch.no_grad():
        learner = response_forward(policy, batch, 1.0, False)["logprobs"]
    for row, logprobs in enumerate(after.response_logprobs):
        assert torch.allclose(learner[row, : len(logprobs)], torch.tensor(logprobs), atol=1e-4)


def test_adapter_names_the_engine_lacks_are_refused():
    engine = HFEngine("tiny", seed=0, device="cpu", lora=SETTINGS)
    other = add_lora(load_causal_lm("tiny"), LoraSettings(target_modules="o_proj"), "CAUSAL_LM")
    with pytest.raises(ValueError, match="adapter tensors the model does not have"):
        engine.load_weights(adapter_state_dict(other), 1)


def test_an_adapter_output_merges_once_and_loads_with_from_pretrained(tmp_path):
    policy = trained_lora_policy(seed=3).eval()
    saved = tmp_path / "checkpoint"
    policy.save_pretrained(saved)
    output = tmp_path / "sft"
    output.mkdir()
    load_tokenizer("tiny").save_pretrained(output)
    save_lora_output(saved, output, merge=False)
    assert (output / ADAPTER_DIR / "adapter_config.json").is_file()
    assert not (output / "config.json").exists()
    check_model("reward_model_path", str(output))  # the command line takes it as a model
    config = json.loads((output / ADAPTER_DIR / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == resolve_model_path("tiny")

    merged = merged_model_path(str(output))
    assert merged == str(output / MERGED_DIR)
    assert merged_model_path(str(output)) == merged  # written once, then reused
    ids = torch.tensor([PROMPTS[0]])
    with torch.no_grad():
        want = policy(ids).logits
        got = AutoModelForCausalLM.from_pretrained(merged)(ids).logits
        base = AutoModelForCausalLM.from_pretrained(resolve_model_path("tiny"))
        peft = PeftModel.from_pretrained(base, str(output / ADAPTER_DIR))(ids).logits
    assert torch.allclose(got, want, atol=1e-5) and torch.allclose(peft, want, atol=1e-5)
    assert (want - load_causal_lm("tiny")(ids).logits).abs().max() > 1e-2  # it is not the base

    with_merge = tmp_path / "merged_output"
    with_merge.mkdir()
    save_lora_output(saved, with_merge, merge=True)
    assert merged_model_path(str(with_merge)) == str(with_merge)
    with torch.no_grad():
        top = AutoModelForCausalLM.from_pretrained(with_merge)(ids).logits
    assert torch.allclose(top, want, atol=1e-5)


def test_a_full_model_path_is_its_own_merged_path(tmp_path):
    assert merged_model_path(resolve_model_path("tiny")) == resolve_model_path("tiny")
    assert merged_model_path("some/hub-name") == "some/hub-name"


def test_a_bfloat16_engine_holds_the_adapter_as_the_sync_casts_it():
    policy = trained_lora_policy(seed=5)
    engine = HFEngine("tiny", dtype="bfloat16", seed=0, device="cpu", lora=SETTINGS)
    engine.load_weights(adapter_state_dict(policy), 1)
    expected = weights_fingerprint(adapter_state_dict(policy), "bfloat16")
    assert fingerprint_mismatches(expected, engine.fingerprint()) == []
