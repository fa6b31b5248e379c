"""The SFT stage's ``transformers.Trainer``: the objectives, the data order, the callbacks.

transformers' Trainer runs the loop: AdamW with weight decay, warmup and the schedule, gradient
accumulation, clipping, mixed precision, DDP (through accelerate, on the process group Ray Train
sets up), evaluation, checkpoints, and exact resume (model, optimizer, scheduler, per-rank RNG
states, step, skipping the batches already seen). Written here, because it has no place for them:

- ``SFTObjectivesTrainer.compute_loss``, per micro-batch (token losses: ``algo/sft_losses.py``)::

      loss = lm_loss                                        assistant tokens of conversations
           + critique_weight * critique_loss                --use_self_critique: critique tokens
           + contrastive_weight * InfoNCE(e, s, temp, thr)  --use_contrastive

  InfoNCE (``algo/contrastive.py``, SupCon) runs over the conversation examples of the worker's
  micro-batch: ``e_b`` is the mean last-layer hidden state over example b's assistant tokens,
  ``s_b`` its record's score. Positives: every response with ``s >= thr``
  (``--contrastive_threshold``) is an anchor pulled toward each *other* response with
  ``s >= thr``. Negatives: the responses with ``s < thr``, which every anchor is pushed from (they
  are in the softmax denominator, never anchors). A micro-batch with fewer than two high-score
  responses adds 0.
- ``_get_train_sampler``: the data order of ``data/sft_dataset.EpochOrder`` (curriculum). The
  sampler's epoch is set by ``SamplerEpochCallback`` from the trainer state, because the
  Trainer's own ``set_epoch`` does not reach a custom sampler in the first epoch of a resumed
  multi-worker run (accelerate's batch-skipping wrapper hides it), which would replay the
  wrong epoch's order.
- ``log``: adds the per-objective losses since the last log, over all workers (``eval_*`` for
  held-out data): the LM and critique losses as means over their tokens, the contrastive loss
  as a mean over its anchors.
- Callbacks: ``RayCheckpointCallback`` reports every saved checkpoint to Ray Train;
  ``TrackingCallback`` (rank 0) writes metrics (JSONL, W&B), which the driver's bar follows;
  ``StopAfterStepsCallback`` ends a session after ``--stop_after_steps`` with a checkpoint.

Precision (``training_arguments``): ``--fp16`` (GPU only) and ``--bf16`` are autocast, with
weights and optimizer state in fp32. On CPU the default is fp32, and ``--bf16`` is bfloat16
autocast on CPU.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from ray_adlf.algo.contrastive import info_nce_loss
from ray_adlf.algo.sft_losses import IGNORE_INDEX, response_embeddings, sft_token_losses
from ray_adlf.config import Config, redacted_dict
from ray_adlf.data.sft_dataset import EpochOrder, EpochOrderSampler

SCHEDULERS = {
    "linear": "linear",
    "cosine": "cosine",
    "cosine_with_restarts": "cosine_with_restarts",
    "constant": "constant_with_warmup",
}


@dataclass(frozen=True)
class SFTObjectives:
    """Which objectives ``compute_loss`` adds to the language-model loss, and how."""

    use_self_critique: bool = False
    critique_weight: float = 0.0
    use_contrastive: bool = False
    contrastive_weight: float = 0.0
    contrastive_temp: float = 0.1
    contrastive_threshold: float = 3.5

    @classmethod
    def from_config(cls, cfg: Config) -> SFTObjectives:
        sft = cfg.sft
        return cls(
            sft.use_self_critique,
            sft.critique_weight,
            sft.use_contrastive,
            sft.contrastive_weight,
            sft.contrastive_temp,
            sft.contrastive_threshold,
        )


class SFTObjectivesTrainer(Trainer):
    """``Trainer`` with the SFT objectives, the epoch order and per-objective logging."""

    loss_is_scaled_for_ga = False  # compute_loss returns per-micro-batch means

    def __init__(self, *args, objectives: SFTObjectives, order: EpochOrder, **kwargs):
        super().__init__(*args, **kwargs)
        self.objectives = objectives
        self.train_sampler = EpochOrderSampler(order)
        self.add_callback(SamplerEpochCallback(self.train_sampler))
        self.model_accepts_loss_kwargs = False
        self._objective_totals: dict[str, dict[str, torch.Tensor]] = {"train": {}, "eval": {}}

    def _get_train_sampler(self, train_dataset=None) -> EpochOrderSampler:
        return self.train_sampler

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The SFT objective of the module docstring for one micro-batch."""
        outputs = model(
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            output_hidden_states=self.objectives.use_contrastive,
        )
        labels, critique_labels = inputs["labels"], inputs["critique_labels"]
        lm_loss, critique_loss = sft_token_losses(outputs.logits, labels, critique_labels)
        loss = lm_loss
        parts = {"lm_loss": (lm_loss, (labels[:, 1:] != IGNORE_INDEX).sum())}
        if self.objectives.use_self_critique:
            loss = loss + self.objectives.critique_weight * critique_loss
            parts["critique_loss"] = (critique_loss, (critique_labels[:, 1:] != IGNORE_INDEX).sum())
        if self.objectives.use_contrastive:
            conversations = inputs["is_conversation"]
            embeddings = response_embeddings(outputs.hidden_states[-1], labels)[conversations]
            scores = inputs["scores"][conversations]
            contrastive_loss = info_nce_loss(
                embeddings.float(),
                scores,
                self.objectives.contrastive_temp,
                self.objectives.contrastive_threshold,
            )
            loss = loss + self.objectives.contrastive_weight * contrastive_loss
            high = (scores >= self.objectives.contrastive_threshold).sum()
            parts["contrastive_loss"] = (contrastive_loss, high * (high >= 2))
        self._accumulate(parts, "train" if model.training else "eval")
        return (loss, outputs) if return_outputs else loss

    def _accumulate(self, parts: dict[str, tuple[torch.Tensor, torch.Tensor]], split: str) -> None:
        """Add ``value * weight`` and ``weight`` (tokens, or contrastive anchors) per objective."""
        totals = self._objective_totals[split]
        for name, (value, weight) in parts.items():
            weight = weight.detach().float()
            pair = torch.stack([value.detach().float() * weight, weight])
            totals[name] = totals[name] + pair if name in totals else pair

    def _drain_objectives(self, split: str) -> dict[str, float]:
        """Per-objective means since the last drain over all workers' tokens (or anchors).

        An objective with nothing to average in the window (no critique tokens, no micro-batch
        with two high-score responses) is left out. Resets the totals.
        """
        names = sorted(self._objective_totals[split])
        if not names:
            return {}
        totals = torch.stack([self._objective_totals[split][n] for n in names]).to(self.args.device)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(totals)
        self._objective_totals[split] = {}
        prefix = "eval_" if split == "eval" else ""
        return {
            f"{prefix}{name}": total / weight
            for name, (total, weight) in zip(names, totals.tolist())
            if weight > 0
        }

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "eval_loss" in logs:
            logs.update(self._drain_objectives("eval"))
        elif "loss" in logs:
            logs.update(self._drain_objectives("train"))
        super().log(logs, start_time)


class SamplerEpochCallback(TrainerCallback):
    """Set the sampler's epoch to ``floor(state.epoch)`` as each epoch (or resumed epoch) begins.

    ``state.epoch`` is 0 at the start, ``e + 1`` exactly after epoch e's last step, and restored
    from the checkpoint on resume.
    """

    def __init__(self, sampler: EpochOrderSampler):
        self.sampler = sampler

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.sampler.set_epoch(math.floor(state.epoch or 0))


def latest_metrics(log_history: list[dict[str, Any]]) -> dict[str, float]:
    """The latest value of every numeric metric in the Trainer's log history."""
    merged: dict[str, float] = {}
    for row in log_history:
        merged.update({k: v for k, v in row.items() if isinstance(v, (int, float))})
    return merged


class RayCheckpointCallback(TrainerCallback):
    """Report each saved checkpoint to Ray Train as ``step_NNNNNN``.

    Every worker reports its own folder (rank 0: model, tokenizer, optimizer, scheduler, trainer
    state, its RNG state; other ranks: their RNG state); Ray Train merges them into one.
    """

    def __init__(self, extra_metrics: dict[str, float]):
        self.extra_metrics = extra_metrics

    def on_save(self, args, state, control, **kwargs):
        import ray.train

        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        metrics = {
            **latest_metrics(state.log_history),
            **self.extra_metrics,
            "step": state.global_step,
            "max_steps": state.max_steps,
        }
        ray.train.report(
            metrics,
            checkpoint=ray.train.Checkpoint.from_directory(folder),
            checkpoint_dir_name=f"step_{state.global_step:06d}",
        )


class StopAfterStepsCallback(TrainerCallback):
    """End the session ``steps`` optimizer steps after it started, saving a checkpoint."""

    def __init__(self, steps: int):
        self.steps = steps
        self.first_step = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.first_step = state.global_step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step - self.first_step >= self.steps:
            control.should_training_stop = True
            control.should_save = True
        return control


class TrackingCallback(TrainerCallback):
    """Rank 0: every log row to the tracker (the driver's progress bar follows those rows).

    The first row of a session holds ``max_steps`` (the bar's total); a resumed session also
    logs ``resumed_from_step`` (so restarts show in the metrics file).
    """

    def __init__(self, tracker, stage: str, first_step: int):
        self.tracker = tracker
        self.stage = stage
        self.first_step = first_step

    def on_train_begin(self, args, state, control, **kwargs):
        row: dict[str, Any] = {"max_steps": state.max_steps}
        if self.first_step:
            row["resumed_from_step"] = self.first_step
        self.tracker.log(row, self.first_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        numbers = {k: v for k, v in (logs or {}).items() if isinstance(v, (int, float))}
        self.tracker.log(numbers, state.global_step)

    def on_train_end(self, args, state, control, **kwargs):
        self.tracker.close()


def training_arguments(
    cfg: Config,
    scratch_dir: str,
    chosen_precision: str,
    has_eval: bool,
    resuming: bool,
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    gradient_accumulation_steps: int = 1,
    prediction_loss_only: bool = True,
) -> TrainingArguments:
    """The Trainer's arguments for a stage (one checkpoint/eval interval for both); the
    schedule, warmup, weight decay and clipping flags are shared by the SFT and reward stages."""
    sft = cfg.sft
    return TrainingArguments(
        output_dir=scratch_dir,
        num_train_epochs=epochs,
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=batch_size,
        gradient_accumulation_steps=gradient_accumulation_steps,
        learning_rate=learning_rate,
        weight_decay=sft.weight_decay,
        max_grad_norm=sft.max_grad_norm,
        lr_scheduler_type=SCHEDULERS[sft.scheduler],
        lr_scheduler_kwargs={"num_cycles": sft.cosine_cycles}
        if sft.scheduler == "cosine_with_restarts"
        else None,
        warmup_steps=sft.warmup_ratio,
        seed=cfg.run.seed,
        use_cpu=not cfg.resources.use_gpu,
        fp16=chosen_precision == "fp16",
        bf16=chosen_precision == "bf16",
        logging_steps=1,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=cfg.run.checkpoint_every,
        eval_on_start=has_eval and not resuming,
        save_strategy="steps",
        save_steps=cfg.run.checkpoint_every,
        save_total_limit=1,
        prediction_loss_only=prediction_loss_only,
        remove_unused_columns=False,
        ddp_find_unused_parameters=False,
        dataloader_num_workers=0,
        report_to="none",
        disable_tqdm=True,
    )


def run_trainer_session(
    cfg: Config,
    loop_config: dict[str, Any],
    stage: str,
    rank: int,
    data_metrics: dict[str, Any],
    make_trainer: Callable[[str, bool, list[TrainerCallback]], Trainer],
) -> None:
    """One Ray Train worker's training session of a Trainer-based stage.

    Resumes from ``ray.train.get_checkpoint()`` when Ray Train hands one over; attaches the
    Ray checkpoint, stop-after-steps and (rank 0) tracking callbacks; ``make_trainer(scratch_dir,
    resuming, callbacks)`` builds the stage's Trainer; its scratch directory is removed after.
    """
    import ray.train
    from transformers.trainer_callback import PrinterCallback

    from ray_adlf.tracking import METRICS_FILE, start_tracker
    from ray_adlf.train.common import run_name

    checkpoint = ray.train.get_checkpoint()
    scratch_dir = tempfile.mkdtemp(prefix=f"ray_adlf_{stage}_rank{rank}_")
    try:
        with checkpoint.as_directory() if checkpoint else contextlib.nullcontext() as resume_dir:
            first_step = 0
            if resume_dir is not None:
                state = json.loads((Path(resume_dir) / "trainer_state.json").read_text())
                first_step = state["global_step"]
            callbacks: list[TrainerCallback] = [RayCheckpointCallback(data_metrics)]
            if cfg.run.stop_after_steps:
                callbacks.append(StopAfterStepsCallback(cfg.run.stop_after_steps))
            if rank == 0:
                tracker = start_tracker(
                    Path(cfg.run.output_dir) / METRICS_FILE,
                    stage,
                    first_step,
                    cfg.run.output_dir,
                    run_name(cfg),
                    redacted_dict(cfg),
                    cfg.run.use_wandb,
                    cfg.run.wandb_project,
                )
                callbacks.append(TrackingCallback(tracker, stage, first_step))
            trainer = make_trainer(scratch_dir, resume_dir is not None, callbacks)
            trainer.remove_callback(PrinterCallback)
            trainer.train(resume_from_checkpoint=resume_dir)
    finally:
        shutil.rmtree(scratch_dir, ignore_errors=True)
