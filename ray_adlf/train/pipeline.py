"""``run_pipeline(cfg, plan)``: the planned training stages, in order, into ``--output_dir``.

``preflight.check_train`` has already validated the data (split into training and held-out
records by seed) and decided the stages (``stages.plan_stages``); this runs them:

1. SFT (``train/sft.py``) -> ``output_dir/sft``.
2. Reward model (``train/reward_model.py``) -> ``output_dir/reward_model``, from the SFT output.
   With an evaluation reward model in the plan (``--eval_every``), the training records are
   split in two disjoint halves: the reward model learns from one, the evaluation reward model
   (``output_dir/eval_reward_model``) from the other, so the policy is never judged by the
   model it was trained against.
3. RLHF (``train/ppo.py``) -> ``output_dir/rlhf``, from the SFT output (or ``--model_name``),
   with the reward model of step 2 (or ``--reward_model_path``, or a finished earlier one).

Each stage prints one line when it starts and one when it ends (its key figures and where its
output is), with a live bar between; a stage that raises ends the pipeline with
``StageFailed`` (the traceback goes to the run log). A stage left unfinished by
``--stop_after_steps`` ends the pipeline there; the same command continues it. The last policy
stage's model (RLHF, else SFT) is also written to ``output_dir`` itself, next to the resolved
``config.yaml`` and the run report (``report.md`` with plots, from ``metrics.jsonl``).
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from ray_adlf.config import Config, from_dict, save_yaml, to_dict
from ray_adlf.console import StageProgress
from ray_adlf.data.records import Record, split_records
from ray_adlf.models.loading import resolve_model_path
from ray_adlf.models.lora import ADAPTER_DIR
from ray_adlf.preflight import TrainPlan
from ray_adlf.report import write_report
from ray_adlf.stages import (
    EVAL_REWARD_MODEL,
    REWARD_MODEL,
    RLHF,
    SFT,
    StageFailed,
    finished_output,
)
from ray_adlf.tracking import METRICS_FILE
from ray_adlf.train.common import run_name

log = logging.getLogger(__name__)
REPORTED = ("loss", "eval_loss", "eval_spearman", "reward", "kl", "eval/objective")
UNITS = {SFT: "step", REWARD_MODEL: "step", EVAL_REWARD_MODEL: "step", RLHF: "round"}


def evaluation_lines(rlhf: dict[str, Any]) -> list[str]:
    """What RLHF changed on held-out prompts (``--eval_every``), from the RL stage's summary:
    the score before round 1 and after the last, and their paired difference."""
    if "eval/gain" not in rlhf:
        return []
    gain, gain_se = rlhf["eval/gain"], rlhf["eval/gain_se"]
    verdict = "better" if gain > 2 * gain_se else "not better by 2 standard errors"
    return [
        "held-out evaluation (evaluation reward model's score of greedy responses, 0-5):",
        f"  before RLHF  {rlhf['eval/baseline_score']:.3f} +- {rlhf['eval/baseline_score_se']:.3f}",
        f"  after RLHF   {rlhf['eval/score']:.3f} +- {rlhf['eval/score_se']:.3f}"
        f"   (KL to the policy before {rlhf['eval/kl']:.2f} +- {rlhf['eval/kl_se']:.2f})",
        f"  change {gain:+.3f} +- {gain_se:.3f} (paired over prompts): RLHF is {verdict}",
    ]


def report_lines(summary: dict[str, Any]) -> list[str]:
    """One line per stage: status, steps and its final figures."""
    lines = []
    for stage, values in summary.items():
        if isinstance(values, dict) and "complete" in values:
            status = "complete" if values["complete"] else "stopped early (resumable)"
            losses = ", ".join(f"{k} {values[k]:.4f}" for k in REPORTED if k in values)
            lines.append(
                f"{stage}: {status}, step {values['step']} of {values['max_steps']}; "
                f"{losses}; last checkpoint `{values['checkpoint']}`"
            )
    return lines + [f"- {line.strip()}" for line in evaluation_lines(summary.get(RLHF, {}))]


def run_stage(
    cfg: Config, stage: str, description: str, total: int | None, run: Callable[[], dict]
) -> dict[str, Any]:
    """Announce, run with a progress bar, announce the end; failures become StageFailed."""
    log.info("[%s] start: %s", stage, description)
    started = time.monotonic()
    metrics = Path(cfg.run.output_dir) / METRICS_FILE
    try:
        with StageProgress(metrics, stage, total, UNITS[stage]):
            summary = run()
    except Exception as err:
        log.debug("%s stage failed", stage, exc_info=True)
        raise StageFailed(stage, err) from err
    figures = ", ".join(f"{k} {summary[k]:.4g}" for k in REPORTED if k in summary)
    where = summary.get("path") or f"checkpoint {summary['checkpoint']} (resumable)"
    log.info(
        "[%s] %s in %.0f s: %s -> %s",
        stage,
        "done" if summary["complete"] else f"stopped at step {summary['step']}",
        time.monotonic() - started,
        figures or "no figures",
        where,
    )
    return summary


def publish_policy(policy_dir: str, output_dir: Path) -> None:
    """Copy the final policy's files (model, tokenizer, card, a LoRA adapter) into
    ``output_dir``."""
    for item in Path(policy_dir).iterdir():
        if item.is_file() and item.name != "config.yaml":
            shutil.copy2(item, output_dir / item.name)
        elif item.name == ADAPTER_DIR:
            shutil.copytree(item, output_dir / ADAPTER_DIR, dirs_exist_ok=True)


def run_pipeline(cfg: Config, plan: TrainPlan) -> dict[str, Any]:
    """Run the planned stages; return ``{"output_dir", "run_name", <stage>: {...}, "report"}``.

    Needs a connected Ray (``ray.init``), like every stage.
    """
    from ray_adlf.train.ppo import run_rlhf
    from ray_adlf.train.reward_model import run_reward_model
    from ray_adlf.train.sft import run_sft

    cfg = from_dict(to_dict(cfg))
    cfg.run.output_dir = str(Path(cfg.run.output_dir).resolve())  # workers run elsewhere
    output_dir = Path(cfg.run.output_dir)
    train, held_out = plan.train_records, plan.eval_records
    summary: dict[str, Any] = {"output_dir": str(output_dir), "run_name": run_name(cfg)}
    policy = finished_output(cfg, SFT) or resolve_model_path(cfg.model.model_name)
    reward_model = cfg.reward_model.reward_model_path or finished_output(cfg, REWARD_MODEL)
    eval_model = cfg.ppo.eval_reward_model_path or finished_output(cfg, EVAL_REWARD_MODEL)
    rm_records: list[Record] = train
    eval_rm_records: list[Record] = []
    if EVAL_REWARD_MODEL in plan.stages.run:
        rm_records, eval_rm_records = split_records(train, 0.5, cfg.run.seed)
    final_policy = None
    for stage in plan.stages.run:
        if stage == SFT:
            result = run_stage(
                cfg,
                SFT,
                f"{cfg.model.model_name} on {len(train)} records ({len(held_out)} held out), "
                f"{cfg.sft.sft_epochs} epochs, {cfg.resources.num_workers} worker(s)",
                None,
                partial(run_sft, cfg, train, held_out),
            )
            final_policy = result.get("path")
            policy = final_policy or policy
        elif stage in (REWARD_MODEL, EVAL_REWARD_MODEL):
            records = rm_records if stage == REWARD_MODEL else eval_rm_records
            result = run_stage(
                cfg,
                stage,
                f"regression on the human score of {len(records)} records, "
                f"{cfg.reward_model.rm_epochs} epochs",
                None,
                partial(run_reward_model, cfg, records, held_out, stage),
            )
            if stage == REWARD_MODEL:
                reward_model = result.get("path", reward_model)
            else:
                eval_model = result.get("path", eval_model)
        else:
            result = run_stage(
                cfg,
                RLHF,
                f"PPO ({cfg.ppo.advantage}) from {policy}, {cfg.ppo.rl_rounds} rounds of "
                f"{cfg.ppo.ppo_batch_size} prompts, alpha {cfg.rewards.adlf_alpha:g}",
                cfg.ppo.rl_rounds,
                partial(run_rlhf, cfg, train, policy, reward_model, held_out, eval_model),
            )
            final_policy = result.get("path", final_policy)
        summary[stage] = result
        if not result["complete"]:
            log.info("[%s] stopped early: run the same command again to continue", stage)
            break
    output_dir.mkdir(parents=True, exist_ok=True)
    every_stage_finished = all(summary.get(stage, {}).get("complete") for stage in plan.stages.run)
    if final_policy and every_stage_finished:
        publish_policy(final_policy, output_dir)
    save_yaml(cfg, output_dir / "config.yaml")
    metrics_path = output_dir / METRICS_FILE
    if metrics_path.exists():
        summary["report"] = str(
            write_report(
                output_dir, metrics_path, f"ray_adlf run {run_name(cfg)}", report_lines(summary)
            )
        )
    return summary
