"""The reward-model stage on Ray Train: regression on the human score, like SFT's scaffolding.

Model: ``AutoModelForSequenceClassification`` with ``num_labels=1`` and
``problem_type="regression"`` (a scalar head on the causal LM, read at the last non-pad token),
initialised from the SFT output (``--rm_init sft``, when ``output_dir/sft`` holds one; otherwise
the base model, with a warning) or the base model ``--model_name`` (``--rm_init base``).

Data: each record's conversation up to its last assistant turn (``rewards/reward_model.py``:
rendered in ``--token_format``, cut from the left to ``--max_seq_length``), target
``meta_eval_score / 5``; the pipeline's training / held-out split. Loss: mean squared error.

Loop: Hugging Face ``Trainer`` in every Ray Train worker, with the SFT stage's callbacks
(``train/sft_trainer.py``) and ``train/common.py``: the same run directory, checkpoints every
``--checkpoint_every`` steps, resume (exact: model, optimizer, scheduler, RNG, data position),
``--stop_after_steps``, metrics to ``metrics.jsonl`` / W&B. It shares ``--scheduler``,
``--warmup_ratio``, ``--weight_decay`` and ``--max_grad_norm`` with SFT; epochs, batch size
and learning rate are ``--rm_epochs``, ``--rm_batch_size``, ``--rm_learning_rate``.

Held-out metrics at every evaluation (on the 0-5 scale): ``eval_mae``, ``eval_pearson``,
``eval_spearman``, ``eval_pairwise_accuracy`` (``rewards/reward_model.regression_metrics``).

Output: ``<output_dir>/<stage>`` (``reward_model``, or ``eval_reward_model`` for the held-out
evaluation model that Tune ranks trials with): a Hugging Face model + tokenizer that loads with
``AutoModelForSequenceClassification``, a model card and the config.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import numpy as np
import torch

from ray_adlf.config import Config, from_dict, to_dict
from ray_adlf.data.formats import prepare_tokenizer
from ray_adlf.data.records import Record, split_last_assistant
from ray_adlf.models.loading import resolve_model_path
from ray_adlf.models.lora import (
    add_lora,
    lora_card,
    lora_load_line,
    lora_settings,
    merged_model_path,
    refuse_new_tokens,
)
from ray_adlf.rewards.reward_model import (
    SCORE_SCALE,
    pad_batch,
    regression_metrics,
    reward_model_ids,
)
from ray_adlf.stages import SFT, finished_output
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

STAGE = "reward_model"
EVAL_METRICS = ("eval_mae", "eval_pearson", "eval_spearman", "eval_pairwise_accuracy")


def init_model_path(cfg: Config) -> str:
    """The model the reward model starts from (module docstring)."""
    if cfg.reward_model.rm_init == "sft":
        sft_dir = finished_output(cfg, SFT)
        if sft_dir:
            return sft_dir
        log.warning(
            "--rm_init sft: no finished SFT model in %s; starting from --model_name %s",
            stage_output_dir(cfg, SFT),
            cfg.model.model_name,
        )
    return resolve_model_path(cfg.model.model_name)


def build_rm_examples(
    records: list[Record], tokenizer, token_format: str, max_length: int
) -> list[dict[str, Any]]:
    """``{"input_ids": [T], "label": score / 5}`` per record (its last assistant turn)."""
    examples = []
    for record in records:
        context, response = split_last_assistant(record)
        ids = reward_model_ids(context, response.content, tokenizer, token_format, max_length)
        examples.append({"input_ids": ids, "label": record.score / SCORE_SCALE})
    return examples


def collate_rm(examples: list[dict[str, Any]], pad_token_id: int) -> dict[str, torch.Tensor]:
    ids, mask = pad_batch([e["input_ids"] for e in examples], pad_token_id)
    labels = torch.tensor([e["label"] for e in examples], dtype=torch.float32)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def compute_rm_metrics(prediction) -> dict[str, float]:
    """Trainer ``compute_metrics``: held-out metrics on the 0-5 scale."""
    predicted = np.asarray(prediction.predictions, float).reshape(-1) * SCORE_SCALE
    target = np.asarray(prediction.label_ids, float).reshape(-1) * SCORE_SCALE
    return regression_metrics(predicted, target)


def rm_worker_loop(loop_config: dict[str, Any]) -> None:
    """``train_loop_per_worker``: build data and model, train or resume, report checkpoints."""
    import ray
    import ray.train
    import transformers
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer

    from ray_adlf.train.sft_trainer import run_trainer_session, training_arguments

    cfg = from_dict(loop_config["config"])
    stage = loop_config["stage"]
    train_records, eval_records = ray.get(loop_config["records"])
    rank = ray.train.get_context().get_world_rank()
    transformers.set_seed(cfg.run.seed)
    transformers.logging.set_verbosity_error()

    init = loop_config["init_path"]
    tokenizer = AutoTokenizer.from_pretrained(init, trust_remote_code=cfg.model.trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForSequenceClassification.from_pretrained(
        init,
        num_labels=1,
        problem_type="regression",
        dtype=torch.float32,
        trust_remote_code=cfg.model.trust_remote_code,
    )
    added = prepare_tokenizer(tokenizer, cfg.data.token_format)
    lora = lora_settings(cfg.model)
    if lora is not None:
        refuse_new_tokens(added, cfg.data.token_format, init)
    if added:
        model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    if lora is not None:
        model = add_lora(model, lora, "SEQ_CLS")

    build = (tokenizer, cfg.data.token_format, cfg.data.max_seq_length)
    train_examples = build_rm_examples(train_records, *build)
    eval_examples = build_rm_examples(eval_records, *build)
    data_metrics = {"train_examples": len(train_examples), "eval_examples": len(eval_examples)}
    if rank == 0:
        print(
            f"[{stage}] from {init}: {len(train_examples)} training, "
            f"{len(eval_examples)} held-out examples",
            flush=True,
        )

    def make_trainer(scratch_dir: str, resuming: bool, callbacks: list) -> Trainer:
        args = training_arguments(
            cfg,
            scratch_dir,
            precision(cfg),
            bool(eval_examples),
            resuming,
            epochs=cfg.reward_model.rm_epochs,
            batch_size=cfg.reward_model.rm_batch_size,
            learning_rate=cfg.reward_model.rm_learning_rate,
            prediction_loss_only=False,
        )
        return Trainer(
            model=model,
            args=args,
            train_dataset=train_examples,
            eval_dataset=eval_examples or None,
            data_collator=lambda batch: collate_rm(batch, tokenizer.pad_token_id),
            processing_class=tokenizer,
            compute_metrics=compute_rm_metrics,
            callbacks=callbacks,
        )

    run_trainer_session(cfg, loop_config, stage, rank, data_metrics, make_trainer)


def rm_model_card(cfg: Config, init: str, metrics: dict[str, Any]) -> str:
    """The reward model's README.md: what it predicts, how it was trained, held-out metrics."""
    rm = cfg.reward_model
    held_out = ", ".join(f"{k[5:]} {metrics[k]:.3f}" for k in EVAL_METRICS if k in metrics)
    return f"""---
library_name: transformers
base_model: {init}
tags: [ray-adlf, reward-model]
---

# {run_name(cfg)}: reward model

Predicts the human `meta_eval_score` / 5 of a conversation's last assistant turn (a scalar
head on a causal LM, regression). Trained by the ray_adlf reward-model stage from `{init}` on
`{cfg.data.data_path}`: {metrics.get("train_examples")} training and
{metrics.get("eval_examples")} held-out examples, {rm.rm_epochs} epoch(s), batch
{rm.rm_batch_size} x {cfg.resources.num_workers} worker(s), learning rate {rm.rm_learning_rate:g}.

- held-out (0-5 scale): {held_out or "no held-out data"}
- input: the conversation in token format `{cfg.data.token_format}`, last
  {cfg.data.max_seq_length} tokens

```python
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from ray_adlf.data.records import Turn
from ray_adlf.rewards.reward_model import reward_model_ids

tokenizer = AutoTokenizer.from_pretrained(OUTPUT_DIR)
{lora_load_line(cfg.model, init, "AutoModelForSequenceClassification")}
ids = reward_model_ids([Turn("user", "What is 2 plus 2?")], "4.", tokenizer,
                       "{cfg.data.token_format}", {cfg.data.max_seq_length})
score = 5 * model(input_ids=torch.tensor([ids])).logits[0, 0].item()
```
{lora_card(cfg.model, init, "AutoModelForSequenceClassification")}"""


def run_reward_model(
    cfg: Config, train_records: list[Record], eval_records: list[Record], stage: str = STAGE
) -> dict:
    """Run the stage (module docstring); return its summary (``path`` when complete)."""
    import ray

    cfg = planned(cfg, stage)
    resumed = prepare_stage_run(cfg, stage, sections=("data", "model", "reward_model"))
    init = merged_model_path(init_model_path(cfg), cfg.model.trust_remote_code)
    loop_config = {
        "config": to_dict(cfg),
        "records": ray.put((train_records, eval_records)),
        "init_path": init,
        "stage": stage,
    }
    result = make_torch_trainer(rm_worker_loop, loop_config, cfg, stage).fit()
    metrics = result.metrics
    complete = metrics["step"] >= metrics["max_steps"]
    summary = {
        "complete": complete,
        "resumed": resumed,
        "checkpoint": result.checkpoint.path,
        **{
            k: metrics[k]
            for k in ("step", "max_steps", "loss", "eval_loss", *EVAL_METRICS)
            if k in metrics
        },
    }
    if complete:
        out_cfg = copy.deepcopy(cfg)
        out_cfg.run.output_dir = str(stage_output_dir(cfg, stage))
        with result.checkpoint.as_directory() as checkpoint_dir:
            summary["path"] = str(
                write_model_outputs(checkpoint_dir, out_cfg, rm_model_card(cfg, init, metrics))
            )
    else:
        log.warning(
            "%s: stopped at step %d of %d; run the same command again (or add "
            "--resume) to continue",
            stage,
            metrics["step"],
            metrics["max_steps"],
        )
    return summary
