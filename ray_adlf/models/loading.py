"""Load models and tokenizers from a local path, a hub name, or the bundled ``tiny`` model.

``tiny`` resolves to the shipped directory; any other name is passed to ``from_pretrained``
unchanged, so real model names and paths work where the user has them (offline: a local path
or a populated Hugging Face cache). ``trust_remote_code`` stays off unless asked for.
"""

from __future__ import annotations

from pathlib import Path

from ray_adlf.models.tiny import tiny_model_path


def resolve_model_path(model_name: str) -> str:
    """``tiny`` -> the bundled model directory; anything else unchanged."""
    return str(tiny_model_path()) if model_name == "tiny" else model_name


def load_tokenizer(model_name: str, trust_remote_code: bool = False):
    """The model's tokenizer with a pad token (the EOS token when the model has none)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(
        resolve_model_path(model_name), trust_remote_code=trust_remote_code
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(model_name: str, trust_remote_code: bool = False, dtype=None):
    """``AutoModelForCausalLM.from_pretrained`` on the resolved path (float32 by default)."""
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(
        resolve_model_path(model_name),
        trust_remote_code=trust_remote_code,
        dtype=dtype or torch.float32,
    )


def is_local_model(model_name: str) -> bool:
    """True when the name points at a directory on disk (or is ``tiny``)."""
    return Path(resolve_model_path(model_name)).is_dir()
