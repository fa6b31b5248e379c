"""What the benchmarks of the demo's RL stage share: its config, the earlier stages, a fresh stage.

``rl_stage_config`` is ``demo_config`` with ``rounds`` RL rounds (the evaluation at most every
``rounds``) and its plan; ``earlier_stages`` runs the stages before RLHF once (after
``ray.init``) or reuses their finished outputs; ``clear_rl_stage`` deletes an earlier RL run, its
output and its ledger, so every measured run starts from the same point.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
from pathlib import Path

from ray_adlf import config, preflight
from ray_adlf.demo import demo_config
from ray_adlf.ledger.store import LEDGER_DIR
from ray_adlf.stages import RLHF, StagePlan, finished_output
from ray_adlf.train import common, pipeline

DEMO_ROUNDS = demo_config("unused").ppo.rl_rounds


def rl_stage_config(output_dir: Path, rounds: int) -> tuple[config.Config, preflight.TrainPlan]:
    cfg = demo_config(str(output_dir))
    cfg.ppo.rl_rounds, cfg.ppo.eval_every = rounds, min(cfg.ppo.eval_every, rounds)
    cfg = config.validate(cfg)
    return cfg, preflight.check_train(cfg)


def earlier_stages(cfg: config.Config, plan: preflight.TrainPlan) -> None:
    preflight.check_cluster(cfg, plan.stages)
    earlier = [stage for stage in plan.stages.run if stage != RLHF]
    if all(finished_output(cfg, stage) for stage in earlier):
        print(f"reusing {', '.join(earlier)} in {cfg.run.output_dir}", file=sys.stderr)
    else:
        pipeline.run_pipeline(cfg, dataclasses.replace(plan, stages=StagePlan(run=earlier)))


def clear_rl_stage(cfg: config.Config) -> None:
    ledger = Path(cfg.run.output_dir) / LEDGER_DIR
    for stale in (common.stage_run_dir(cfg, RLHF), common.stage_output_dir(cfg, RLHF), ledger):
        shutil.rmtree(stale, ignore_errors=True)
