"""Benchmark the rollout engines: direct calls, a RolloutPool of 1 and 2 actors, weight sync.

Model: a random Llama of ``--hidden`` x ``--layers`` (heads of 64, MLP 8/3 x hidden, tied
embeddings) with the tiny tokenizer, or ``--model_name``. Prompts: ``--prompts`` random token
lists with lengths uniform in ``[--min_prompt_len, --max_prompt_len]``. Every response is sampled
at temperature 1 and runs to ``--max_new_tokens`` (EOS ignored), so every call yields the same
number of tokens. Each engine gets ``--cpus_per_actor`` threads, in this process and in every
actor; the 2-actor pool uses twice the CPUs.

Printed, per engine (medians of ``--repeats`` calls after one warm-up; direct and pool calls
are interleaved so that background load on a shared machine hits both alike):

- tokens/s called directly in this process, through the pool with 1 actor and with 2 actors;
- ``vs direct``: the pool call's extra time over the direct call just before it;
  ``engine in actor``: the engine's own time inside the actor vs the direct call (the process,
  not Ray's RPC, when they differ); ``Ray ms``: call time minus engine time (RPC, pickling,
  scheduling) per call;
- weight sync (``RolloutPool.sync_weights``: pack + one ``ray.put`` + every actor's load) next
  to in-process copies of the same tensors: ``clone`` (new tensors, like ``state_dict`` copies)
  and ``copy_`` into existing tensors (like ``load_state_dict``), and the engine's own in-process
  ``load_weights``.

Run: ``python jobs/bench_rollout.py --hidden 768 --layers 8``. ``--worker_niceness 0`` runs the
actors at the driver's CPU priority (Ray's default for workers is 15).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from pathlib import Path


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model_name", default=None, help="use this model instead of a random one")
    parser.add_argument("--hidden", type=int, default=256, help="random Llama hidden size")
    parser.add_argument("--layers", type=int, default=4, help="random Llama layers")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--min_prompt_len", type=int, default=16)
    parser.add_argument("--max_prompt_len", type=int, default=128)
    parser.add_argument("--max_new_tokens", type=int, default=64)
    parser.add_argument("--engines", default="hf,vllm", help="comma-separated: hf,vllm")
    parser.add_argument("--cpus_per_actor", type=int, default=1, help="= threads per engine")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--worker_niceness", type=int, default=None, help="CPU niceness of the actors (Ray: 15)"
    )
    return parser.parse_args()


def build_random_llama(out_dir: Path, hidden: int, layers: int, seed: int) -> str:
    """Save a random-init LlamaForCausalLM with the tiny tokenizer to ``out_dir``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from ray_adlf.models.loading import load_tokenizer

    tokenizer = load_tokenizer("tiny")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=64 * round(hidden * 8 / 3 / 64),
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64),
        num_key_value_heads=max(1, hidden // 64),
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return str(out_dir)


def random_prompts(count: int, low: int, high: int, vocab: int, seed: int) -> list[list[int]]:
    """``count`` prompts, lengths uniform in [low, high], tokens above the special ids."""
    rng = random.Random(seed)
    return [[rng.randrange(16, vocab) for _ in range(rng.randint(low, high))] for _ in range(count)]


def seconds(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def median(values) -> float:
    return statistics.median(list(values))


def bench_generation(engine, pool, prompts, sampling, repeats: int) -> dict[str, float]:
    """Interleaved direct and pool calls after one warm-up each; medians in seconds."""
    engine.generate(prompts, sampling)  # vLLM compiles and allocates on its first batch
    pool.generate(prompts, sampling)
    direct, total, shards = [], [], []
    for _ in range(repeats):
        direct.append(seconds(lambda: engine.generate(prompts, sampling)))
        start = time.perf_counter()
        shards.append(pool.generate(prompts, sampling).timings)
        total.append(time.perf_counter() - start)
    return {
        "direct_s": median(direct),
        "pool_s": median(total),
        "vs_direct": median(p / d - 1 for p, d in zip(total, direct, strict=True)),
        "in_actor": median(
            max(t.engine_s for t in ts) / d - 1 for ts, d in zip(shards, direct, strict=True)
        ),
        "ray_s": median(max(t.call_s - t.engine_s for t in ts) for ts in shards),
    }


def bench_sync(engine, pool, state_dict, repeats: int) -> dict[str, float | str]:
    """Interleaved sync / clone / copy_ / direct engine load; medians in seconds after one
    warm-up round, and the last sync's breakdown."""
    from ray_adlf.engines import pack_state_dict

    stored = list(pack_state_dict(state_dict).buffers)  # tied weights once, as sync sends them
    targets = {k: state_dict[k].clone() for k in stored}
    times: dict[str, list[float]] = {"sync": [], "clone": [], "copy": [], "load": []}
    for _ in range(repeats + 1):
        times["clone"].append(seconds(lambda: {k: state_dict[k].clone() for k in stored}))
        times["copy"].append(seconds(lambda: [targets[k].copy_(state_dict[k]) for k in stored]))
        times["load"].append(seconds(lambda: engine.load_weights(state_dict, engine.version)))
        times["sync"].append(seconds(lambda: pool.sync_weights(state_dict)))
    last = pool.last_sync
    loads = "/".join(f"{s * 1e3:.1f}" for s in last.load_s)
    return {name: median(values[1:]) for name, values in times.items()} | {
        "parts": f"{last.prepare_s * 1e3:.1f} + {last.send_s * 1e3:.1f} + {loads}",
        "nbytes": last.nbytes,
    }


def main() -> None:
    args = parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.cpus_per_actor)  # before torch: direct = one actor
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    if args.worker_niceness is not None:
        os.environ["RAY_worker_niceness"] = str(args.worker_niceness)  # noqa: SIM112 (Ray's name)
    import ray

    from ray_adlf.actors.rollout import RolloutPool
    from ray_adlf.engines import SamplingParams, build_engine
    from ray_adlf.models.loading import load_causal_lm

    workdir = Path(tempfile.mkdtemp(prefix="bench_rollout_"))
    os.environ.setdefault("VLLM_CACHE_ROOT", str(workdir / "vllm_cache"))
    model_path = args.model_name or build_random_llama(
        workdir / "model", args.hidden, args.layers, args.seed
    )
    learner = load_causal_lm(model_path)
    state_dict = learner.state_dict()
    prompts = random_prompts(
        args.prompts, args.min_prompt_len, args.max_prompt_len, learner.config.vocab_size, args.seed
    )
    sampling = SamplingParams(
        temperature=1.0, max_new_tokens=args.max_new_tokens, stop_on_eos=False
    )
    tokens = len(prompts) * args.max_new_tokens

    ray.init(num_cpus=2 * args.cpus_per_actor, include_dashboard=False, log_to_driver=False)
    gen_rows, sync_rows = [], []
    for name in [name.strip() for name in args.engines.split(",") if name.strip()]:
        engine = build_engine(name, model_path)
        for workers in (1, 2):
            pool = RolloutPool(name, model_path, num_workers=workers, num_cpus=args.cpus_per_actor)
            gen = bench_generation(engine, pool, prompts, sampling, args.repeats)
            sync = bench_sync(engine, pool, state_dict, args.repeats)
            pool.shutdown()
            if workers == 1:
                gen_rows.append(f"{name:<7}{'direct':<9}{tokens / gen['direct_s']:>9.0f}")
            gen_rows.append(
                f"{name:<7}{f'pool x{workers}':<9}{tokens / gen['pool_s']:>9.0f}"
                f"{gen['vs_direct']:>+10.1%}{gen['in_actor']:>+10.1%}{gen['ray_s'] * 1e3:>9.1f}"
            )
            sync_rows.append(
                f"{name:<7}{f'x{workers}':<5}{sync['sync'] * 1e3:>8.1f}{sync['clone'] * 1e3:>9.1f}"
                f"{sync['sync'] / sync['clone']:>6.1f}{sync['copy'] * 1e3:>9.1f}"
                f"{sync['sync'] / sync['copy']:>6.1f}{sync['load'] * 1e3:>9.1f}   {sync['parts']}"
            )
        del engine
    ray.shutdown()

    params_m = sum(p.numel() for p in learner.parameters()) / 1e6
    print(
        f"\nmodel {model_path}: {params_m:.2f}M params, {sync['nbytes'] / 2**20:.1f} MiB synced; "
        f"{len(prompts)} prompts of {args.min_prompt_len}-{args.max_prompt_len} tokens, "
        f"{args.max_new_tokens} new each ({tokens} tokens per call); {args.cpus_per_actor} "
        f"thread(s) per engine; medians of {args.repeats}"
    )
    print(
        f"\n{'engine':<7}{'how':<9}{'tokens/s':>9}{'vs direct':>10}{'engine in':>10}{'Ray ms':>9}"
    )
    print(f"{'':<25}{'(paired)':>10}{'actor':>10}{'per call':>9}")
    print("\n".join(gen_rows))
    print(
        f"\n{'engine':<7}{'pool':<5}{'sync ms':>8}{'clone ms':>9}{'x':>6}{'copy_ ms':>9}{'x':>6}"
        f"{'load ms':>9}   pack + put + actor loads (ms, last sync)"
    )
    print("\n".join(sync_rows))


if __name__ == "__main__":
    main()
