"""Ray Tune over the RL stage: ``ray-adlf tune --space FILE.py --num_samples N --scheduler ...``.

1. Prepare once (``prepare``): ``run_pipeline`` with the reward model on, RLHF off and
   ``--eval_every`` >= 1, into ``<output_dir>/prepared``: the SFT policy (when ``--run_sft``),
   the reward model and the evaluation reward model trained on the disjoint half of the
   training records. ``prepared.json`` records the paths; a rerun reuses them.
2. Every trial runs only ``run_rlhf`` from those models for ``--rounds_per_trial`` rounds, with
   the trial's values applied to the config (``apply_params``). The eight multi-objective
   weights are divided by their sum after the values are applied, so they always sum to 1
   (spaces sample raw weights uniformly: the normalised weights are then uniform on the
   simplex's interior up to that rescaling, and Optuna can sample them too).
3. The metric is ``eval/objective`` (mode max): the evaluation reward model's mean score of
   greedy responses to held-out prompts, less ``--kl_budget_penalty`` per unit of KL over
   ``--kl_budget`` (``train/rl_eval.evaluate``). The training reward is not comparable across
   trials: alpha and the weights change what it measures.

Results from the Train workers reach Tune through ``ForwardToTune``, a Ray Train callback run by
the trial's Train controller: it hands rank 0's metrics and the round's checkpoint to the trial
function (a queue pair: the controller waits until Tune has copied the checkpoint), which
reports the evaluation rounds to Tune with the checkpoint. A trial that starts with a Tune
checkpoint (restored, or a PBT exploit of a better trial's) starts a fresh Ray Train run from it
and continues at the round after the checkpoint's, with its own (possibly mutated) values.

Schedulers: ``asha`` (early stopping on evaluations, grace 1, halving), ``pbt`` (every
``--perturbation_interval`` evaluations the bottom quarter copies a top-quarter trial's checkpoint
and perturbs alpha, the weights and ``kl_target`` of the space), ``fifo`` (all trials run to the
end). Search: ``random`` (Tune's variant generator) or ``optuna`` (TPE; not with ``pbt``).

Resources: a trial's placement group (``trial_bundles``) holds ``TRIAL_CPUS`` for the trial
function and one bundle per actor it starts (rollout, reward, evaluation reward (+ critics,
reference actor)); its Ray Train workers take ``--num_workers x --learner_num_cpus`` in their own
group. ``tune_plan.plan_search`` decides the shares before Ray starts: one trial per 2 CPUs at
once (``--max_concurrent_trials`` otherwise), each within ``C / concurrent`` of the C CPUs, so
no trial waits on a half-placed trainer.

Restore: the experiment lives in ``<output_dir>/ray_tune/<run_name>-tune``; when Tune can restore
it (the driver died), the same command resumes it (``Tuner.restore``), errored trials included.

Outputs in ``<output_dir>/tune/<run_name>``: ``best_config.yaml`` (the full config with the best
finished trial's values, RLHF on, for ``ray-adlf train --config``), ``results.csv`` (one row per
trial), ``objective.png`` and ``report.md``.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import threading
import uuid
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.train import UserCallback

from ray_adlf.config import Config, ConfigError, from_dict, save_yaml, to_dict
from ray_adlf.files import atomic_write_text
from ray_adlf.models.loading import resolve_model_path
from ray_adlf.preflight import TrainPlan
from ray_adlf.stages import EVAL_REWARD_MODEL, REWARD_MODEL, SFT, StagePlan
from ray_adlf.train.common import run_name
from ray_adlf.train.pipeline import run_pipeline
from ray_adlf.train.ppo import run_rlhf
from ray_adlf.tune_plan import (
    PBT_MUTABLE,
    SECTIONS,
    SearchPlan,
    TuneOptions,
    apply_params,
    plan_search,
    trial_bundles,
)

log = logging.getLogger(__name__)
METRIC = "eval/objective"


def prepare(cfg: Config, train_records: list, eval_records: list) -> dict[str, str]:
    """SFT (if on), reward model and evaluation reward model, once; their paths."""
    prep = from_dict(to_dict(cfg))
    prep.run.output_dir = str(Path(cfg.run.output_dir) / "prepared")
    prep.run.run_name = "prepared"
    prep.reward_model.run_reward_model = True
    prep.ppo.run_rlhf = False
    marker = Path(prep.run.output_dir) / "prepared.json"
    if marker.is_file():
        return json.loads(marker.read_text(encoding="utf-8"))
    stages = [SFT] if cfg.sft.run_sft else []
    stages += [REWARD_MODEL] + ([] if cfg.ppo.eval_reward_model_path else [EVAL_REWARD_MODEL])
    plan = TrainPlan(StagePlan(run=stages), train_records, eval_records)
    summary = run_pipeline(prep, plan)
    stages = [summary[s] for s in ("sft", "reward_model", EVAL_REWARD_MODEL) if s in summary]
    if not all(stage["complete"] for stage in stages):
        raise RuntimeError(f"tune: preparation stopped early: {summary}")
    prepared = {
        "policy": summary["sft"]["path"]
        if "sft" in summary
        else resolve_model_path(cfg.model.model_name),
        "reward_model": summary["reward_model"]["path"],
        "eval_reward_model": summary.get(EVAL_REWARD_MODEL, {}).get("path")
        or cfg.ppo.eval_reward_model_path,
    }
    atomic_write_text(marker, json.dumps(prepared, indent=2))
    return prepared


class ForwardToTune(UserCallback):
    """Ray Train callback (runs in the controller): each report's rank-0 metrics and
    checkpoint path go to the trial function; waits until it has reported them to Tune."""

    def __init__(self, results, acks) -> None:
        self.results, self.acks = results, acks

    def after_report(self, run_context, metrics, checkpoint) -> None:
        self.results.put((metrics[0], checkpoint.path if checkpoint else None))
        self.acks.get()


def rl_trial(
    params: dict[str, Any],
    base: dict[str, Any],
    train_records: list,
    eval_records: list,
    prepared: dict[str, str],
) -> None:
    """One trial: ``run_rlhf`` in a thread; its evaluation rounds reported to Tune."""
    from ray.util.queue import Queue

    cfg = apply_params(from_dict(base), params)
    context = tune.get_context()
    cfg.run.output_dir = str(Path(context.get_trial_dir()) / "rl")
    cfg.run.run_name = f"{context.get_trial_id()}-{uuid.uuid4().hex[:8]}"  # fresh Train run
    start = tune.get_checkpoint()
    start_checkpoint = ray.train.Checkpoint.from_directory(start.path) if start else None
    results, acks = Queue(1, actor_options={"num_cpus": 0}), Queue(1, actor_options={"num_cpus": 0})
    failures: list[BaseException] = []

    def fit() -> None:
        try:
            run_rlhf(
                cfg,
                train_records,
                prepared["policy"],
                prepared["reward_model"],
                eval_records,
                prepared["eval_reward_model"],
                start_checkpoint=start_checkpoint,
                callbacks=[ForwardToTune(results, acks)],
            )
        except BaseException as err:  # re-raised in the trial's thread below
            failures.append(err)
        finally:
            results.put(None)

    thread = threading.Thread(target=fit, daemon=True)
    thread.start()
    while (item := results.get()) is not None:
        metrics, checkpoint_path = item
        if METRIC in metrics:
            checkpoint = (
                tune.Checkpoint.from_directory(checkpoint_path) if checkpoint_path else None
            )
            tune.report(metrics, checkpoint=checkpoint)
        acks.put(True)
    thread.join()
    if failures:
        raise failures[0]


def make_scheduler(name: str, space: dict[str, Any], max_evals: int, interval: int):
    """ASHA, PBT over the space's mutable flags, or None (FIFO)."""
    from ray.tune.schedulers import ASHAScheduler, PopulationBasedTraining

    if name == "asha":
        return ASHAScheduler(
            time_attr="training_iteration", max_t=max_evals, grace_period=1, reduction_factor=2
        )
    if name == "pbt":
        mutations = {flag: space[flag] for flag in PBT_MUTABLE if flag in space}
        if not mutations:
            raise ConfigError(f"--scheduler pbt: the space has none of {', '.join(PBT_MUTABLE)}")
        return PopulationBasedTraining(
            time_attr="training_iteration",
            perturbation_interval=interval,
            hyperparam_mutations=mutations,
        )
    return None


def run_tune(
    cfg: Config, options: TuneOptions, train_records: list, eval_records: list
) -> dict[str, Any]:
    """Fit the trials into the cluster's CPUs, prepare, search (or resume the search), write
    the outputs; return their paths. Needs a connected Ray; the records are validated."""
    plan: SearchPlan = plan_search(cfg, options, ray.cluster_resources().get("CPU", 1.0))
    log.info(plan.describe(options.num_samples))
    trial, space, concurrent = plan.trial, plan.space, plan.concurrent
    prepared = prepare(plan.base, train_records, eval_records)
    trainable = tune.with_resources(
        tune.with_parameters(
            rl_trial,
            base=to_dict(trial),
            train_records=train_records,
            eval_records=eval_records,
            prepared=prepared,
        ),
        tune.PlacementGroupFactory(trial_bundles(trial)),
    )
    name = f"{run_name(trial)}-tune"
    storage = Path(trial.run.output_dir) / "ray_tune"
    if tune.Tuner.can_restore(storage / name):
        tuner = tune.Tuner.restore(str(storage / name), trainable, resume_errored=True)
    else:
        tuner = new_tuner(trainable, trial, space, options, concurrent)
    results = tuner.fit()
    return write_outputs(results, trial, Path(trial.run.output_dir) / "tune" / run_name(trial))


def new_tuner(trainable, base: Config, space, options: TuneOptions, concurrent: int):
    """A Tuner over ``space`` with the scheduler, searcher and concurrency of ``run_tune``."""
    max_evals = math.ceil(base.ppo.rl_rounds / base.ppo.eval_every)
    search_alg = None
    if options.search == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        search_alg = OptunaSearch(seed=base.run.seed)
    return tune.Tuner(
        trainable,
        param_space=space,
        tune_config=tune.TuneConfig(
            metric=METRIC,
            mode="max",
            scheduler=make_scheduler(
                options.scheduler, space, max_evals, options.perturbation_interval
            ),
            search_alg=search_alg,
            num_samples=options.num_samples,
            max_concurrent_trials=concurrent,
        ),
        run_config=tune.RunConfig(
            name=f"{run_name(base)}-tune",
            storage_path=str(Path(base.run.output_dir) / "ray_tune"),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            failure_config=tune.FailureConfig(max_failures=base.run.max_failures),
            verbose=0,
        ),
    )


def write_outputs(results, base: Config, out_dir: Path) -> dict[str, Any]:
    """best_config.yaml, results.csv, objective.png and report.md (module docstring)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    trials = [r for r in results if r.metrics and METRIC in r.metrics]
    finished = [r for r in trials if r.metrics["round"] == base.ppo.rl_rounds]
    if not finished:
        raise RuntimeError(f"tune: no trial finished all {base.ppo.rl_rounds} rounds")
    best = max(finished, key=lambda r: r.metrics[METRIC])
    best_cfg = apply_params(base, best.config)
    best_cfg.run.output_dir = str(out_dir / "best_run")
    best_cfg.run.run_name = None
    save_yaml(best_cfg, out_dir / "best_config.yaml")
    flags = sorted({flag for r in trials for flag in r.config})
    with open(out_dir / "results.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["trial", "rounds", METRIC, f"best {METRIC}", *flags, "error"])
        for r in results:
            frame = r.metrics_dataframe
            best_seen = frame[METRIC].max() if frame is not None and METRIC in frame else ""
            metrics = r.metrics or {}
            values = apply_params(base, r.config)
            writer.writerow(
                [
                    Path(r.path).name,
                    metrics.get("round", 0),
                    metrics.get(METRIC, ""),
                    best_seen,
                    *[getattr(getattr(values, SECTIONS[f]), f) for f in flags],
                    repr(r.error) if r.error else "",
                ]
            )
    figure, axes = plt.subplots(figsize=(7, 4))
    for r in trials:
        frame = r.metrics_dataframe
        axes.plot(frame["round"], frame[METRIC], marker="o", label=Path(r.path).name[:24])
    axes.set_xlabel("RL round")
    axes.set_ylabel(METRIC)
    axes.legend(fontsize=6)
    figure.tight_layout()
    figure.savefig(out_dir / "objective.png")
    plt.close(figure)
    lines = [
        f"# Tune report: {run_name(base)}",
        "",
        f"- {len(trials)} trials with results; best: `{Path(best.path).name}`, "
        f"{METRIC} {best.metrics[METRIC]:.4f} after {base.ppo.rl_rounds} rounds",
        f"- best values: {', '.join(f'{k}={v:.4g}' for k, v in sorted(best.config.items()))}",
        "- full config: `best_config.yaml`; every trial: `results.csv`",
        "",
        "![objective over rounds](objective.png)",
    ]
    (out_dir / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {
        "best_config": str(out_dir / "best_config.yaml"),
        "best": best.config,
        "objective": best.metrics[METRIC],
        "results": str(out_dir / "results.csv"),
        "report": str(out_dir / "report.md"),
        "trials": len(results),
    }
