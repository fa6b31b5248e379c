"""``ray-adlf demo``: the pipeline on the bundled tiny model and sample, offline.

Today it prepares everything the training stages consume: it validates the bundled sample,
prints its statistics, loads the tiny model and tokenizer, renders one training example, and
writes the resolved config to ``OUTPUT_DIR/config.yaml``.
"""

from __future__ import annotations

from pathlib import Path

from ray_adlf.config import Config, save_yaml, validate
from ray_adlf.data.formats import render_conversation, tokenize_conversation
from ray_adlf.data.sample import sample_path
from ray_adlf.data.stats import dataset_stats, format_stats
from ray_adlf.data.validate import read_records
from ray_adlf.models.loading import load_causal_lm, load_tokenizer


def demo_config(output_dir: str) -> Config:
    """The demo's config: tiny model, bundled sample, every stage on."""
    cfg = Config()
    cfg.data.data_path = "sample"
    cfg.model.model_name = "tiny"
    cfg.run.output_dir = output_dir
    return validate(cfg)


def run_demo(output_dir: str) -> Path:
    """Run the demo into ``output_dir``; return the path of the resolved config."""
    cfg = demo_config(output_dir)
    records = read_records(sample_path()).records
    tokenizer = load_tokenizer(cfg.model.model_name)
    model = load_causal_lm(cfg.model.model_name)
    print(f"data: {sample_path()}")
    print("\n".join(format_stats(dataset_stats(records, tokenizer, cfg.data.token_format))))
    example = tokenize_conversation(
        records[0].conversation, tokenizer, cfg.data.token_format, cfg.data.max_seq_length
    )
    text, _ = render_conversation(records[0].conversation, tokenizer, cfg.data.token_format)
    labelled = sum(label != -100 for label in example.labels)
    print(
        f"model: {cfg.model.model_name} ({sum(p.numel() for p in model.parameters()):,} "
        f"parameters, vocab {len(tokenizer)})"
    )
    print(f"first example ({len(example.input_ids)} tokens, {labelled} labelled):\n{text}")
    config_path = Path(output_dir) / "config.yaml"
    save_yaml(cfg, config_path)
    print(f"resolved config: {config_path}")
    return config_path
