"""The SFT stage on Ray Train: the worker loop and the driver side.

``run_sft`` (driver): checks the resume rules (``common.prepare_stage_run``), puts the split
records in the object store, runs ``sft_worker_loop`` on a ``TorchTrainer`` and, when the run
is complete, copies the final model + tokenizer from the last checkpoint into
``output_dir/sft`` with a model card and the config (the pipeline publishes the last policy
stage's model to ``output_dir`` itself). A session ended by ``--stop_after_steps`` writes no model; the
same command (or ``--resume``) continues it.

``sft_worker_loop`` (every worker): tokenizer (+ the format's special tokens, embeddings resized)
and model; the examples of ``data/sft_dataset.py``; the Trainer of ``sft_trainer.py`` with its
data order; resume from ``ray.train.get_checkpoint()`` when Ray Train hands one over (a resumed
run, or a restart after a worker failure). The model's generation config stops at the format's
end-of-turn token.
"""

from __future__ import annotations

import copy
import logging
from functools import partial
from typing import Any

from ray_adlf.config import Config, from_dict, to_dict
from ray_adlf.data.curriculum import difficulty_scores
from ray_adlf.data.formats import prepare_tokenizer, stop_token
from ray_adlf.data.records import Record
from ray_adlf.data.sft_dataset import (
    EpochOrder,
    SFTDataset,
    SFTExample,
    build_examples,
    collate_examples,
)
from ray_adlf.models.loading import load_causal_lm, load_tokenizer, resolve_model_path
from ray_adlf.models.lora import (
    add_lora,
    lora_card,
    lora_load_line,
    lora_settings,
    refuse_new_tokens,
)
from ray_adlf.train.common import (
    make_torch_trainer,
    planned,
    precision,
    prepare_stage_run,
    run_name,
    stage_output_dir,
    write_model_outputs,
)

log = logging.getLogger(__name__)

STAGE = "sft"


def epoch_order(cfg: Config, examples: list[SFTExample], world_size: int) -> EpochOrder:
    """The data order: curriculum difficulties from record score and token length when on."""
    difficulties = None
    if cfg.data.use_curriculum:
        difficulties = tuple(
            difficulty_scores(
                [e.score for e in examples],
                [len(e.input_ids) for e in examples],
                cfg.data.curriculum_score_weight,
            )
        )
    per_step = cfg.sft.sft_batch_size * world_size * cfg.sft.gradient_accumulation_steps
    return EpochOrder(
        len(examples),
        cfg.run.seed,
        difficulties,
        per_step,
        cfg.data.curriculum_start_fraction,
        cfg.data.curriculum_pacing,
    )


def worker_precision(cfg: Config, say: bool) -> str:
    """``precision(cfg)``, bf16 falling back to fp32 on a GPU without it; ``say`` logs it."""
    import torch

    chosen = precision(cfg)
    if chosen == "bf16" and cfg.resources.use_gpu and not torch.cuda.is_bf16_supported():
        chosen = "fp32"
        if say:
            print(f"[{STAGE}] --bf16: this GPU has no bfloat16; training in fp32", flush=True)
    if say:
        kind = {"fp32": "fp32", "bf16": "bfloat16 autocast", "fp16": "float16 autocast"}[chosen]
        device = "GPU" if cfg.resources.use_gpu else "CPU"
        print(f"[{STAGE}] precision: {kind} on {device}; weights and optimizer in fp32", flush=True)
    return chosen


def sft_worker_loop(loop_config: dict[str, Any]) -> None:
    """``train_loop_per_worker``: build data and model, train or resume, report checkpoints."""
    import ray
    import ray.train
    import transformers

    from ray_adlf.train.sft_trainer import (
        SFTObjectives,
        SFTObjectivesTrainer,
        run_trainer_session,
        training_arguments,
    )

    cfg = from_dict(loop_config["config"])
    train_records, eval_records = ray.get(loop_config["records"])
    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    transformers.set_seed(cfg.run.seed)
    transformers.logging.set_verbosity_warning()

    tokenizer = load_tokenizer(cfg.model.model_name, cfg.model.trust_remote_code)
    model = load_causal_lm(cfg.model.model_name, cfg.model.trust_remote_code)
    added = prepare_tokenizer(tokenizer, cfg.data.token_format)
    lora = lora_settings(cfg.model)
    if lora is not None:
        refuse_new_tokens(added, cfg.data.token_format, cfg.model.model_name)
    if added:
        model.resize_token_embeddings(len(tokenizer))
    stop_id = tokenizer.convert_tokens_to_ids(stop_token(tokenizer, cfg.data.token_format))
    model.generation_config.eos_token_id = sorted({stop_id, tokenizer.eos_token_id})
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    if lora is not None:
        model = add_lora(model, lora, "CAUSAL_LM")

    build = partial(
        build_examples,
        tokenizer=tokenizer,
        token_format=cfg.data.token_format,
        max_seq_length=cfg.data.max_seq_length,
        decision_transformer=cfg.data.use_decision_transformer,
        self_critique=cfg.sft.use_self_critique,
    )
    train_examples, train_stats = build(train_records)
    eval_examples, eval_stats = build(eval_records)
    data_metrics = {
        "train_examples": len(train_examples),
        "eval_examples": len(eval_examples),
        "truncated_examples": train_stats.truncated + eval_stats.truncated,
        "dropped_examples": train_stats.dropped + eval_stats.dropped,
    }
    if rank == 0:
        print(
            f"[{STAGE}] data: " + ", ".join(f"{k} {v}" for k, v in data_metrics.items()), flush=True
        )
    chosen_precision = worker_precision(cfg, say=rank == 0)

    def make_trainer(scratch_dir: str, resuming: bool, callbacks: list) -> SFTObjectivesTrainer:
        args = training_arguments(
            cfg,
            scratch_dir,
            chosen_precision,
            bool(eval_examples),
            resuming,
            epochs=cfg.sft.sft_epochs,
            batch_size=cfg.sft.sft_batch_size,
            learning_rate=cfg.sft.sft_learning_rate,
            gradient_accumulation_steps=cfg.sft.gradient_accumulation_steps,
        )
        return SFTObjectivesTrainer(
            model=model,
            args=args,
            train_dataset=SFTDataset(train_examples),
            eval_dataset=SFTDataset(eval_examples) if eval_examples else None,
            data_collator=partial(collate_examples, pad_token_id=tokenizer.pad_token_id),
            processing_class=tokenizer,
            callbacks=callbacks,
            objectives=SFTObjectives.from_config(cfg),
            order=epoch_order(cfg, train_examples, world_size),
        )

    run_trainer_session(cfg, loop_config, STAGE, rank, data_metrics, make_trainer)


def sft_model_card(cfg: Config, metrics: dict[str, Any]) -> str:
    """The output's README.md: what was trained, how, the final losses, how to prompt it."""
    sft, data = cfg.sft, cfg.data
    objectives = ["language modelling on assistant tokens"]
    if data.use_decision_transformer:
        objectives.append(
            f"score conditioning (decision transformer; generate with target "
            f"score {data.target_score:g})"
        )
    if sft.use_self_critique:
        objectives.append(f"self-critique (weight {sft.critique_weight:g})")
    if sft.use_contrastive:
        objectives.append(
            f"contrastive InfoNCE (weight {sft.contrastive_weight:g}, temperature "
            f"{sft.contrastive_temp:g}, high score >= {sft.contrastive_threshold:g})"
        )
    if data.use_curriculum:
        objectives.append(
            f"curriculum order ({data.curriculum_pacing} pacing from "
            f"{data.curriculum_start_fraction:g} of the data)"
        )
    target = data.target_score if data.use_decision_transformer else None
    base = resolve_model_path(cfg.model.model_name)
    losses = ", ".join(f"{k} {metrics[k]:.4f}" for k in ("loss", "eval_loss") if k in metrics)
    workers = cfg.resources.num_workers
    lines = [
        "---",
        "library_name: transformers",
        f"base_model: {cfg.model.model_name}",
        "tags: [ray-adlf, sft]",
        "---",
        "",
        f"# {run_name(cfg)}: supervised fine-tune",
        "",
        f"Fine-tuned from `{cfg.model.model_name}` by the ray_adlf SFT stage (Hugging Face "
        f"Trainer on Ray Train, {workers} worker(s)) on `{data.data_path}`.",
        "",
        f"- data: {metrics.get('train_examples')} training and {metrics.get('eval_examples')} "
        f"held-out examples; {metrics['step']} optimizer steps",
        f"- objectives: {'; '.join(objectives)}",
        f"- optimisation: {sft.sft_epochs} epoch(s); batch {sft.sft_batch_size} per worker x "
        f"{workers} worker(s) x {sft.gradient_accumulation_steps} accumulation; AdamW, learning "
        f"rate {sft.sft_learning_rate:g}, {sft.scheduler} schedule, warmup "
        f"{sft.warmup_ratio:g}, weight decay {sft.weight_decay:g}, gradient clip "
        f"{sft.max_grad_norm:g}; precision {precision(cfg)}",
        f"- text: token format `{data.token_format}`, max_seq_length {data.max_seq_length}",
        f"- final losses: {losses}; curves in `report.md`, every logged value in `metrics.jsonl`",
        "",
        "## Use",
        "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "from ray_adlf.data.prompts import generation_prompt",
        "from ray_adlf.data.records import Turn",
        "",
        "tokenizer = AutoTokenizer.from_pretrained(OUTPUT_DIR)",
        lora_load_line(cfg.model, base, "AutoModelForCausalLM"),
        'context = [Turn("user", "What is the capital of Peru?")]',
        f'prompt = generation_prompt(context, tokenizer, "{data.token_format}", '
        f"target_score={target!r})",
        'inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)',
        "reply = model.generate(**inputs, max_new_tokens=48)  # stops at the end of the turn",
        'print(tokenizer.decode(reply[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))',
        "```",
    ]
    if sft.use_self_critique:
        lines += [
            "",
            "Critique: `ray_adlf.data.prompts.critique_prompt(conversation, tokenizer, format)` "
            "asks for one; the model answers `Score: X/5` and `Reason: ...` "
            "(`ray_adlf.data.critique`).",
        ]
    return "\n".join(lines) + "\n" + lora_card(cfg.model, base, "AutoModelForCausalLM")


def run_sft(cfg: Config, train_records: list[Record], eval_records: list[Record]) -> dict:
    """Run the stage (module docstring); return its summary."""
    import ray

    cfg = planned(cfg, STAGE)
    resumed = prepare_stage_run(cfg, STAGE)
    loop_config = {"config": to_dict(cfg), "records": ray.put((train_records, eval_records))}
    result = make_torch_trainer(sft_worker_loop, loop_config, cfg, STAGE).fit()
    metrics = result.metrics
    complete = metrics["step"] >= metrics["max_steps"]
    summary = {
        "complete": complete,
        "resumed": resumed,
        "checkpoint": result.checkpoint.path,
        **{k: metrics[k] for k in ("step", "max_steps", "loss", "eval_loss") if k in metrics},
    }
    if complete:
        out_cfg = copy.deepcopy(cfg)
        out_cfg.run.output_dir = str(stage_output_dir(cfg, STAGE))
        with result.checkpoint.as_directory() as checkpoint_dir:
            summary["path"] = str(
                write_model_outputs(checkpoint_dir, out_cfg, sft_model_card(cfg, metrics))
            )
    else:
        log.warning(
            "%s: stopped at step %d of %d; run the same command again (or add "
            "--resume) to continue",
            STAGE,
            metrics["step"],
            metrics["max_steps"],
        )
    return summary
