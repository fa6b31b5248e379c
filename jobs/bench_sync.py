"""Benchmark weight sync: seconds per push against model size, object store vs collective.

For each size, a random Llama (``bench_rollout.build_random_llama``: tied embeddings, the tiny
tokenizer, 12 h^2 parameters a layer) is saved, ``--engines`` RolloutActors (``--engine``) load
it, and this process plays the learner's rank 0: it pushes its weights through a
``WeightSync`` of each method (``actors.weight_sync``), one warm-up push (it builds the
collective group) and then ``--repeats``, and prints the medians:

- ``push s``: the whole push as rank 0 sees it, verification included;
- ``send s``: ``ray.put`` of the packed weights, or the bucketed gloo broadcasts;
- ``load s``: the slowest receiver's load inside its actor, its own fingerprint included;
- ``fp s``: rank 0's fingerprints of the weights (``weights_fingerprint``);
- ``MiB/s``: bytes moved over the push's seconds.

With ``--lora`` (the default) each size is measured again with a LoRA adapter (r 8 on every
linear layer, ``models.lora``): the engines hold the base with the same adapter and a push
carries the adapter alone.

Run: ``python jobs/bench_sync.py`` (sizes up to ~400M parameters; ``--sizes 256x4,512x8``
picks hidden x layers; ``--no-lora`` skips the adapter rows).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from ray_adlf.models.lora import LoraSettings

DEFAULT_SIZES = "tiny,256x4,512x8,768x12,1024x16,1280x20"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help="tiny or HIDDENxLAYERS, commas")
    parser.add_argument("--engine", default="hf", choices=["hf", "vllm"])
    parser.add_argument("--engines", type=int, default=1, help="receivers (RolloutActors)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bucket_mb", type=int, default=64, help="collective bucket size, MiB")
    parser.add_argument("--lora", action=argparse.BooleanOptionalAction, default=True)
    return parser.parse_args()


def model_path(size: str, scratch: Path) -> str:
    """The bundled tiny model, or a random Llama of ``HIDDENxLAYERS`` saved under ``scratch``."""
    from bench_rollout import build_random_llama

    from ray_adlf.models.loading import resolve_model_path

    if size == "tiny":
        return resolve_model_path("tiny")
    hidden, layers = (int(part) for part in size.split("x"))
    return build_random_llama(scratch / size, hidden, layers, seed=0)


def bench_size(path: str, args: argparse.Namespace, lora: LoraSettings | None) -> list[dict]:
    """Rows for one model (with ``lora``: its adapter): one per method."""
    from ray_adlf.actors.group import wait_ready
    from ray_adlf.actors.rollout import RolloutPool
    from ray_adlf.actors.weight_sync import WeightSync
    from ray_adlf.models.loading import load_causal_lm
    from ray_adlf.models.lora import adapter_state_dict, add_lora

    learner = load_causal_lm(path)
    params = sum(p.numel() for p in learner.parameters())
    state_dict = learner.state_dict()
    if lora is not None:
        state_dict = adapter_state_dict(add_lora(learner, lora, "CAUSAL_LM"))
    pool = RolloutPool(args.engine, path, num_workers=args.engines, num_cpus=1, lora=lora)
    rows = []
    try:
        wait_ready([pool.group])
        for method in ("object_store", "collective"):
            sync = WeightSync(method, bucket_bytes=args.bucket_mb * 2**20)
            sync.add(pool.group.actors, "float32", "RolloutActor", on_gpu=False)
            timings = []
            for version in range(1, args.repeats + 2):
                started = time.perf_counter()
                timing = sync.push(state_dict, version)
                timings.append((time.perf_counter() - started, timing))
            sync.close()
            measured = timings[1:]
            row = {
                "params": params,
                "method": method + (" LoRA" if lora else ""),
                "push_s": statistics.median(wall for wall, _ in measured),
                "send_s": statistics.median(t.send_s for _, t in measured),
                "load_s": statistics.median(max(t.load_s) for _, t in measured),
                "fingerprint_s": statistics.median(t.fingerprint_s for _, t in measured),
                "nbytes": measured[-1][1].nbytes,
            }
            row["mib_per_s"] = row["nbytes"] / 2**20 / row["push_s"]
            rows.append(row)
            print(format_row(row), flush=True)
    finally:
        pool.shutdown()
    return rows


def format_row(row: dict) -> str:
    return (
        f"| {row['params'] / 1e6:7.1f}M | {row['nbytes'] / 2**20:8.1f} | {row['method']:17} "
        f"| {row['push_s']:7.3f} | {row['send_s']:7.3f} | {row['load_s']:7.3f} "
        f"| {row['fingerprint_s']:6.3f} | {row['mib_per_s']:7.0f} |"
    )


def main() -> None:
    import ray
    import transformers

    args = parse_args()
    transformers.logging.disable_progress_bar()
    ray.init(num_cpus=max(4, args.engines + 1), include_dashboard=False, log_to_driver=False)
    print(f"engine {args.engine}, {args.engines} receiver(s), median of {args.repeats} pushes")
    print("| params | MiB | method | push s | send s | load s | fp s | MiB/s |")
    print("|---|---|---|---|---|---|---|---|")
    try:
        with tempfile.TemporaryDirectory() as scratch:
            for size in args.sizes.split(","):
                path = model_path(size, Path(scratch))
                bench_size(path, args, None)
                if args.lora:
                    bench_size(path, args, LoraSettings())
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
