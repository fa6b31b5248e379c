"""Benchmark the rollout ledger's cost: the RL stage of ``ray-adlf demo``, ledger on and off.

With ``demo_config`` and ``--rounds`` rounds the bench starts its own local Ray (``RAY_ADDRESS``
unset), runs the stages before RLHF (or reuses their outputs in ``--output_dir``), then runs the
RL stage alone ``--repeats`` times with the ledger on (``--ledger_every 1``: every round
recorded, the heaviest setting) and off (``--ledger_every 0``), alternating, so background load
hits both alike. Per run, from its metrics.jsonl rows, over rounds 2..N (round 1 warms up) and
leaving out the evaluation round:

- ``round_s``: the mean gap between consecutive rounds' rows;
- ``ledger_s``: the ledger's time on the round's critical path (gathering the learner ranks'
  per-sample values to rank 0, building the columns, queueing them, and at a checkpoint waiting
  for queued writes), and its share of ``round_s``, the figure the README quotes;
- ``ledger_write_s``: the writer thread's time per round (Arrow table, zstd Parquet, rename),
  which overlaps the next round;
- the ledger's bytes on disk per recorded round.

The on/off difference of ``round_s`` is printed too; on 2 busy cores it is noise-dominated (run
to run the demo's round varies by more than the ledger costs), which is why the share of the
critical path is measured directly. About 2 minutes per RL run on 2 cores, plus about 3 minutes
once for the earlier stages.

Run: ``python jobs/bench_ledger.py`` (``--rounds 20 --repeats 2``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path

import ray
from demo_stages import DEMO_ROUNDS, clear_rl_stage, earlier_stages, rl_stage_config

from ray_adlf import config, console, preflight, tracking
from ray_adlf.ledger.store import LEDGER_DIR, ledger_files
from ray_adlf.stages import RLHF, StagePlan
from ray_adlf.train import pipeline


def run_rl_stage(cfg: config.Config, plan: preflight.TrainPlan) -> list[dict]:
    """One RL stage from scratch; its rounds' metrics rows, in order."""
    clear_rl_stage(cfg)
    started_at = time.time()
    summary = pipeline.run_pipeline(cfg, dataclasses.replace(plan, stages=StagePlan(run=[RLHF])))
    if not summary.get(RLHF, {}).get("complete"):
        raise RuntimeError(f"the RL stage did not finish: {summary.get(RLHF)}")
    rows = tracking.read_metrics(Path(cfg.run.output_dir) / tracking.METRICS_FILE)
    by_step = {r["step"]: r for r in rows if r.get("stage") == RLHF and r["time"] >= started_at}
    return [by_step[step] for step in sorted(by_step) if by_step[step].get("round")]


def figures(rows: list[dict], ledger: Path) -> dict:
    """Means over rounds 2..N without the evaluation round (module docstring)."""
    pairs = [(a, b) for a, b in zip(rows, rows[1:]) if "time/eval_s" not in b]
    out = {
        "rounds": len(pairs),
        "round_s": statistics.fmean(b["time"] - a["time"] for a, b in pairs),
    }
    for key in ("ledger_s", "ledger_write_s"):
        values = [b[f"time/{key}"] for _, b in pairs if f"time/{key}" in b]
        out[key] = statistics.fmean(values) if values else 0.0
    files = ledger_files(ledger) if ledger.exists() else []
    out["ledger_bytes_per_round"] = (
        statistics.fmean(f.stat().st_size for f in files) if files else 0
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", default="outputs/bench_ledger")
    parser.add_argument("--rounds", type=int, default=DEMO_ROUNDS)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    if os.environ.get("RAY_ADDRESS"):
        parser.error("RAY_ADDRESS is set: the bench starts (and measures) its own local Ray")
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    output_dir = Path(args.output_dir).resolve()
    cfg, plan = rl_stage_config(output_dir, args.rounds)
    ray.init(**console.ray_init_options(False))
    runs: dict[str, list[dict]] = {"on": [], "off": []}
    try:
        earlier_stages(cfg, plan)
        for repeat in range(args.repeats):
            for mode, every in (("on", 1), ("off", 0)):
                cfg.run.ledger_every = every
                result = figures(run_rl_stage(cfg, plan), output_dir / LEDGER_DIR)
                runs[mode].append(result)
                print(f"run {repeat + 1} ledger {mode}: {json.dumps(result)}", file=sys.stderr)
    finally:
        ray.shutdown()
    on, off = runs["on"], runs["off"]
    round_on = statistics.fmean(r["round_s"] for r in on)
    round_off = statistics.fmean(r["round_s"] for r in off)
    ledger_s = statistics.fmean(r["ledger_s"] for r in on)
    write_s = statistics.fmean(r["ledger_write_s"] for r in on)
    kib = statistics.fmean(r["ledger_bytes_per_round"] for r in on) / 1024
    print(
        f"RL stage of `ray-adlf demo` settings, {args.rounds} rounds x {args.repeats} runs each, "
        f"ledger every round ({cfg.ppo.ppo_batch_size * cfg.ppo.num_samples_per_prompt} rows "
        f"a round), {os.cpu_count()} cores\n"
        f"- ledger on the round's critical path: {ledger_s * 1000:.1f} ms a round = "
        f"**{100 * ledger_s / round_on:.2f}%** of the {round_on:.2f} s round\n"
        f"- writer thread (overlaps the next round): {write_s * 1000:.1f} ms a round; "
        f"{kib:.1f} KiB of Parquet a round\n"
        f"- seconds a round, ledger on {round_on:.2f} vs off {round_off:.2f} "
        f"({100 * (round_on - round_off) / round_off:+.1f}%; single runs ranged "
        f"{min(r['round_s'] for r in on + off):.2f}-{max(r['round_s'] for r in on + off):.2f} s)"
    )
    print("JSON: " + json.dumps({"on": on, "off": off}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
