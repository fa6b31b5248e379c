import json

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from ray_adlf.models.loading import load_causal_lm, load_tokenizer, resolve_model_path
from ray_adlf.models.tiny import build_tiny, tiny_model_path


def test_tiny_resolves_to_the_shipped_hf_directory():
    path = tiny_model_path()
    assert resolve_model_path("tiny") == str(path)
    assert resolve_model_path("org/some-model") == "org/some-model"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (path / name).is_file(), name
    assert json.loads((path / "config.json").read_text())["model_type"] == "llama"


def test_tiny_loads_offline_and_generates_until_eos():
    tokenizer = load_tokenizer("tiny")
    model = load_causal_lm("tiny")
    assert tokenizer.chat_template and tokenizer.eos_token == "<|end|>"
    assert model.config.vocab_size == len(tokenizer)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 2 plus 2?"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt").input_ids
    out = model.generate(ids, max_new_tokens=8, do_sample=False)
    assert out.shape[1] > ids.shape[1]
    assert tokenizer.decode(ids[0]) == prompt  # byte-level BPE round-trips exactly


def test_rebuild_is_deterministic_and_matches_the_shipped_model(tmp_path):
    build_tiny(tmp_path / "a")
    shipped = AutoModelForCausalLM.from_pretrained(tiny_model_path())
    rebuilt = AutoModelForCausalLM.from_pretrained(tmp_path / "a")
    for (name, a), (_, b) in zip(shipped.state_dict().items(), rebuilt.state_dict().items()):
        assert torch.equal(a, b), name
    text = "Hello <|user|> 42 Ünïcödé"
    assert (
        AutoTokenizer.from_pretrained(tmp_path / "a")(text).input_ids
        == AutoTokenizer.from_pretrained(tiny_model_path())(text).input_ids
    )
