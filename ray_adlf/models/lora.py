"""LoRA adapters through PEFT: the settings, wrapping a model, the adapter's tensors, outputs.

On each target module ``W' x = W x + (alpha / r) * B (A x)`` with ``A`` [r, in] random and
``B`` [out, r] zero at the start, so a fresh adapter changes nothing. Only ``A``, ``B`` (and a
reward model's score head) train; the base weights stay frozen, hence:

- the reference policy is the policy with its adapter disabled (no second copy);
- a weights sync carries the adapter's tensors alone (``adapter_state_dict``), which an engine
  holding the same PEFT-wrapped base loads (``load_adapter_state``);
- a checkpoint holds the adapter; resuming loads it into the same base.

A stage trained with ``--use_lora`` writes ``adapter/`` (PEFT layout:
``PeftModel.from_pretrained(base, OUT/adapter)``) and, with ``--merge_lora``, the merged model
at the top of its output (``from_pretrained(OUT)``). ``merged_model_path`` gives a later stage,
or an engine, a full model either way: the merged output, or ``OUT/merged/`` written once from
the base and the adapter. Importing this module imports neither torch nor PEFT (the
command line's checks read it before any model loads).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch

ADAPTER_DIR = "adapter"
MERGED_DIR = "merged"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_FILES = (ADAPTER_CONFIG, "adapter_model.safetensors")
TaskType = Literal["CAUSAL_LM", "SEQ_CLS"]


@dataclass(frozen=True)
class LoraSettings:
    """``--lora_r``, ``--lora_alpha``, ``--lora_dropout``, ``--lora_target_modules``
    (``all-linear`` or comma-separated module names)."""

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: str = "all-linear"

    @property
    def targets(self) -> str | list[str]:
        if self.target_modules == "all-linear":
            return "all-linear"
        return [name.strip() for name in self.target_modules.split(",") if name.strip()]


def lora_settings(model_config) -> LoraSettings | None:
    """The ``--lora_*`` flags of a ``ModelConfig``, or None without ``--use_lora``."""
    if not model_config.use_lora:
        return None
    return LoraSettings(
        model_config.lora_r,
        model_config.lora_alpha,
        model_config.lora_dropout,
        model_config.lora_target_modules,
    )


def adapter_loader(model_class: str, base: str) -> str:
    """Code that loads an adapter-only output: the base (a reward model's one label
    included) with ``OUTPUT_DIR/adapter`` on it (PEFT)."""
    labels = ", num_labels=1" if "SequenceClassification" in model_class else ""
    return (
        f'PeftModel.from_pretrained({model_class}.from_pretrained("{base}"{labels}), '
        f'OUTPUT_DIR + "/{ADAPTER_DIR}")'
    )


def lora_load_line(model_config, base: str, model_class: str) -> str:
    """The model card's line that loads the output: ``from_pretrained(OUTPUT_DIR)``, or for an
    adapter-only output ``adapter_loader``."""
    if model_config.use_lora and not model_config.merge_lora:
        return f"model = {adapter_loader(model_class, base)}  # from peft import PeftModel"
    return f"model = {model_class}.from_pretrained(OUTPUT_DIR)"


def lora_card(model_config, base: str, model_class: str) -> str:
    """The model card's LoRA paragraph ("" without ``--use_lora``): what was adapted and how
    to load the output."""
    settings = lora_settings(model_config)
    if settings is None:
        return ""
    trained = (
        f"LoRA adapter (r {settings.r}, alpha {settings.alpha:g}, dropout "
        f"{settings.dropout:g}, modules {settings.target_modules}) over the frozen `{base}`, "
        f"in `{ADAPTER_DIR}/` (PEFT layout)."
    )
    if model_config.merge_lora:
        return f"\n{trained} The weights at the top are the base with it merged in.\n"
    return (
        f"\n{trained} Load it with `{adapter_loader(model_class, base)}`, or train with "
        "--merge_lora for weights that load with `from_pretrained(OUTPUT_DIR)`.\n"
    )


def refuse_new_tokens(added: int, token_format: str, model_path: str) -> None:
    """LoRA keeps the embeddings frozen, so tokens a format adds would stay untrained."""
    if added:
        raise ValueError(
            f"{model_path}: --token_format {token_format} adds {added} token(s) to its "
            "tokenizer, whose embeddings --use_lora leaves untrained; use --token_format "
            "standard, or train once without --use_lora"
        )


def add_lora(model: torch.nn.Module, settings: LoraSettings, task_type: TaskType):
    """``model`` wrapped by ``peft.get_peft_model``: base frozen, adapter (and for
    ``SEQ_CLS`` the score head) trainable. Module names must exist in ``model``."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=settings.targets,
        task_type=task_type,
    )
    try:  # the adapter in the base's dtype: a bf16 engine holds it as the sync casts it
        return get_peft_model(model, config, autocast_adapter_dtype=False)
    except ValueError as error:
        raise ValueError(f"--lora_target_modules {settings.target_modules!r}: {error}") from None


def adapter_state_dict(model) -> dict[str, torch.Tensor]:
    """The adapter's tensors (PEFT names, adapter name stripped): what a sync sends."""
    from peft import get_peft_model_state_dict

    return get_peft_model_state_dict(model)


def load_adapter_state(model, state: Mapping[str, torch.Tensor]) -> None:
    """Copy ``adapter_state_dict``-named tensors into ``model``'s adapter; every one must
    land on an adapter parameter."""
    from peft import set_peft_model_state_dict

    result = set_peft_model_state_dict(model, dict(state))
    if result.unexpected_keys:
        raise ValueError(f"adapter tensors the model does not have: {result.unexpected_keys[:3]}")


def is_adapter_dir(path: str | Path) -> bool:
    """A PEFT adapter directory (``adapter_config.json``, no full model)."""
    return (Path(path) / ADAPTER_CONFIG).is_file() and not (Path(path) / "config.json").is_file()


def save_lora_output(
    adapter_source: Path, output_dir: Path, merge: bool, trust_remote_code: bool = False
) -> None:
    """A stage's LoRA output from a saved adapter directory: ``output_dir/adapter/``, and with
    ``merge`` the merged model (base + adapter) at the top of ``output_dir`` (whose tokenizer
    is already there)."""
    adapter = output_dir / ADAPTER_DIR
    shutil.rmtree(adapter, ignore_errors=True)
    adapter.mkdir(parents=True)
    for name in ADAPTER_FILES:
        shutil.copy2(adapter_source / name, adapter / name)
    if merge:
        merge_adapter(adapter, trust_remote_code).save_pretrained(output_dir)


def merge_adapter(adapter_dir: str | Path, trust_remote_code: bool = False) -> torch.nn.Module:
    """The base named in ``adapter_dir``'s config with the adapter merged in (a plain model)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    config = json.loads((Path(adapter_dir) / ADAPTER_CONFIG).read_text())
    base_path = config["base_model_name_or_path"]
    if config["task_type"] == "SEQ_CLS":
        base = AutoModelForSequenceClassification.from_pretrained(
            base_path,
            num_labels=1,
            problem_type="regression",
            dtype=torch.float32,
            trust_remote_code=trust_remote_code,
        )
        base.config.pad_token_id = pad_token_id(Path(adapter_dir).parent)
    else:
        base = AutoModelForCausalLM.from_pretrained(
            base_path, dtype=torch.float32, trust_remote_code=trust_remote_code
        )
    return PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()


def pad_token_id(tokenizer_dir: Path) -> int:
    """The pad id a reward model batches with (EOS when the tokenizer has no pad token)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    return tokenizer.eos_token_id if tokenizer.pad_token_id is None else tokenizer.pad_token_id


def merged_model_path(path: str, trust_remote_code: bool = False) -> str:
    """A full model for ``path``: itself unless it is an adapter-only LoRA output, whose
    merged model is written once to ``path/merged/`` (atomically: concurrent callers, such as
    Tune trials, each get the complete directory)."""
    root = Path(path)
    adapter = root / ADAPTER_DIR
    if not root.is_dir() or (root / "config.json").is_file() or not is_adapter_dir(adapter):
        return path
    merged = root / MERGED_DIR
    if (merged / "config.json").is_file():
        return str(merged)
    from transformers import AutoTokenizer

    scratch = Path(tempfile.mkdtemp(prefix=".merging_", dir=root))
    merge_adapter(adapter, trust_remote_code).save_pretrained(scratch)
    AutoTokenizer.from_pretrained(root).save_pretrained(scratch)
    try:
        os.rename(scratch, merged)
    except OSError:  # another caller got there first: its directory is complete
        shutil.rmtree(scratch, ignore_errors=True)
    return str(merged)
