"""Benchmark a PPO and a GRPO round loop: TRL against ray_adlf on the same work, on one machine.

The work: a random-init Llama (hidden 256, 8 layers, MLP 1024, 4 heads, untied embeddings) with
the byte-level BPE tokenizer of ``ray_adlf.models.tiny`` asked for 2,000 tokens (the sample
generator's text has too few distinct words for more than 1,682, so the policy has 9.25M
parameters), and a reward model of the same shape (a seeded random
``LlamaForSequenceClassification``, one label), built offline once into ``--cache_dir``. A round:
16 sequences of a 16-token prompt (the last 16 tokens of a bundled sample record's prompt, the
same ids in both frameworks) and up to 32 sampled tokens (temperature 1, stop at EOS), scored by
the reward model, then one PPO epoch of one minibatch of 16; fp32, no gradient checkpointing,
constant learning rate 1e-5.

- PPO: TRL 1.12 ``PPOTrainer`` (policy, reference, reward and a value model started from the
  reward model) vs ray_adlf ``--advantage gae --critic_mode separate`` (its value head on a copy
  of the policy) with the reward model only (``--adlf_alpha 0``, no internal signals); KL
  coefficient 0.05 in both.
- GRPO: TRL 1.16 ``GRPOTrainer`` (4 prompts x 4 samples, ``beta=0``) vs ray_adlf ``--advantage
  grpo`` (4 prompts x 4 samples, ``--init_kl_coef 0``).

ray_adlf runs three ways: ``sync`` (generate, score, learn and sync in turn), ``async``
(``--async_rollout --max_staleness 1 --reference_placement actor``: round r + 1 is sampled and
scored while round r trains; the reference in its own actor, since a colocated one would run
its forward in the learner's process, beside its training) and ``async2`` (the same with
``--num_rollout_workers 2``).

TRL is installed with ``pip install --no-deps --target`` into the cache (its dependencies come
from this venv) and put first on ``PYTHONPATH``; 1.12's PPOTrainer runs unchanged on this venv's
transformers 5.19. Every run is a process of its own (for ray_adlf a
driver with its own local ``ray.init``, so start-up includes Ray), and the runs alternate TRL,
ray_adlf, TRL, ... so background load hits both alike.

Measured in each run: the wall clock at the end of every round (TRL: ``on_step_end`` of a
``TrainerCallback``; ray_adlf: the ``time`` of the round's metrics.jsonl row, written after the
weight sync) and at the start of round 1 (TRL: ``on_train_begin``; ray_adlf, whose rows hold no
start time: round 1's end minus its wait and learner seconds). Printed:

- seconds a round: the median gap between consecutive round ends, round 1 (warm-up) left out,
  pooled over the repeats; trained tokens a second: 16 x 48 sequence tokens over that median;
- start-up: from spawning the process to the start of round 1 (median over the repeats);
- ray_adlf's phases: the median of each ``time/*`` metric over rounds 2..N and its share of
  the round. The learner thread's round is ``wait`` (for its rollout) + ``learner`` +
  ``other`` (the rest: the weights hand-over, metrics, Ray Train's report); the producer's
  phases (generate, reference, reward, sync) are inside ``wait`` in sync mode and overlap the
  learner's under async. ``--plot`` draws both stacks, sync vs async;
- the floor: one forward+backward of the policy on 16 x 48 tokens and one ``generate`` of
  16 x 32 new tokens, in plain torch with ``--threads`` threads (median of 5 after a warm-up),
  and ``x floor``: seconds a round over the two together;
- ``ratio``: ray_adlf / TRL, of each row.

TRL runs under ``nice -n 15``, the niceness Ray gives its workers (where ray_adlf computes), so
background load slows both alike; the numbers still mean most on a quiet machine.

Run: ``python jobs/bench_ppo.py --plot docs/bench_ppo_phases.png`` (defaults: 13 rounds x 3
runs of each, about 30 minutes on 2 quiet cores; ``--repeats 1`` about 10; the first call also
builds the models and installs TRL, about a minute).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHAPE = dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=8, num_attention_heads=4)
VOCAB_SIZE = 2000
SEQUENCES, GROUP, PROMPT_TOKENS, NEW_TOKENS = 16, 4, 16, 32
KL_COEF, LEARNING_RATE = 0.05, 1e-5
TRL_VERSIONS = {"ppo": "1.12.0", "grpo": "1.16.0"}
# ray_adlf's modes: sync (generate, score, learn, sync in turn), async (--async_rollout,
# --max_staleness 1: round r + 1 sampled while round r trains), async2 (the same with 2
# rollout actors)
MODES = ("sync", "async", "async2")
RUNS = (
    "trl_ppo",
    *(f"adlf_ppo_{mode}" for mode in MODES),
    "trl_grpo",
    *(f"adlf_grpo_{mode}" for mode in MODES),
)
RAY_WORKER_NICENESS = 15  # Ray's default for worker processes


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=13, help="rounds a run; round 1 is warm-up")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each framework and algo")
    parser.add_argument(
        "--cache_dir", default=str(Path.home() / ".cache" / "ray_adlf" / "bench_ppo")
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="torch threads of TRL and the floor (ray_adlf plans its own: every core a phase)",
    )
    parser.add_argument(
        "--plot", help="write the stacked per-phase round times, sync vs async, to this PNG"
    )
    parser.add_argument("--worker", choices=RUNS, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    return parser.parse_args()


# ---- the models and prompts, built once ----


def llama_config(tokenizer, **extra):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer),
        num_key_value_heads=SHAPE["num_attention_heads"],
        max_position_embeddings=1024,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **SHAPE,
        **extra,
    )


def pick_prompts(tokenizer) -> dict[str, list]:
    """Indices of the sample records whose RL prompt (as ray_adlf builds it) has 16 tokens that
    decode to a text encoding back to the same ids (TRL's GRPOTrainer takes text), and the ids."""
    from ray_adlf.data.rl_prompts import build_rl_prompts
    from ray_adlf.data.sample import sample_path
    from ray_adlf.data.validate import read_records

    records = read_records(sample_path()).records
    chosen: dict[str, list] = {"records": [], "ids": []}
    for index, prompt in enumerate(
        build_rl_prompts(records, tokenizer, "standard", None, PROMPT_TOKENS)
    ):
        ids = prompt.prompt_ids
        if len(ids) == PROMPT_TOKENS and tokenizer(tokenizer.decode(ids))["input_ids"] == ids:
            chosen["records"].append(index)
            chosen["ids"].append(ids)
    return chosen


def build_models(cache: Path) -> None:
    """Tokenizer, policy, reward model and ``prompts.json`` into ``cache``, unless there."""
    if (cache / "prompts.json").exists():
        return
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM, LlamaForSequenceClassification

    from ray_adlf.models import tiny

    tokenizer = tiny.build_tokenizer(seed=0, vocab_size=VOCAB_SIZE)
    torch.manual_seed(0)
    policy = LlamaForCausalLM(llama_config(tokenizer))
    policy.generation_config.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(1)
    reward = LlamaForSequenceClassification(llama_config(tokenizer, num_labels=1))
    for name, model in (("policy", policy), ("reward", reward)):
        model.save_pretrained(cache / name)
        tokenizer.save_pretrained(cache / name)
    prompts = pick_prompts(AutoTokenizer.from_pretrained(cache / "policy"))
    (cache / "prompts.json").write_text(json.dumps(prompts))


def install_trl(cache: Path, version: str) -> Path:
    """``trl==version`` without its dependencies in ``cache/trl-version``, unless there."""
    target = cache / f"trl-{version}"
    if not (target / "trl").is_dir():
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target"]
            + [str(target), f"trl=={version}"],
            check=True,
        )
    return target


# ---- the runs, each in a process of its own (--worker) ----


def round_clock():
    """A TrainerCallback noting the wall clock at the start of training and every step's end."""
    from transformers import TrainerCallback

    class RoundClock(TrainerCallback):
        def __init__(self):
            self.begin, self.ends = 0.0, []

        def on_train_begin(self, args, state, control, **kwargs):
            self.begin = time.time()

        def on_step_end(self, args, state, control, **kwargs):
            self.ends.append(time.time())

    return RoundClock()


def trl_common(out_dir: Path, threads: int) -> dict:
    """TrainingArguments both TRL trainers get: fp32 on the CPU, quiet, nothing saved."""
    import torch

    torch.set_num_threads(threads)
    return dict(
        output_dir=str(out_dir),
        per_device_train_batch_size=SEQUENCES,
        learning_rate=LEARNING_RATE,
        temperature=1.0,
        bf16=False,
        gradient_checkpointing=False,
        use_cpu=True,
        lr_scheduler_type="constant",  # ray_adlf's default; TRL's is linear
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
    )


def run_trl_ppo(cache: Path, rounds: int, out_dir: Path, threads: int) -> dict:
    import trl
    from datasets import Dataset
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
    )
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    args = PPOConfig(
        **trl_common(out_dir, threads),
        total_episodes=SEQUENCES * rounds,
        num_mini_batches=1,
        num_ppo_epochs=1,
        local_rollout_forward_batch_size=SEQUENCES,
        response_length=NEW_TOKENS,
        stop_token="eos",
        kl_coef=KL_COEF,
        num_sample_generations=0,
    )
    prompts = json.loads((cache / "prompts.json").read_text())
    clock = round_clock()
    trainer = PPOTrainer(
        args=args,
        processing_class=AutoTokenizer.from_pretrained(cache / "policy"),
        model=AutoModelForCausalLM.from_pretrained(cache / "policy"),
        ref_model=AutoModelForCausalLM.from_pretrained(cache / "policy"),
        reward_model=AutoModelForSequenceClassification.from_pretrained(cache / "reward"),
        value_model=AutoModelForSequenceClassification.from_pretrained(cache / "reward"),
        train_dataset=Dataset.from_dict({"input_ids": prompts["ids"]}),
        callbacks=[clock],
    )
    trainer.train()
    return {"begin": clock.begin, "ends": clock.ends, "trl": trl.__version__}


def run_trl_grpo(cache: Path, rounds: int, out_dir: Path, threads: int) -> dict:
    import trl
    from datasets import Dataset
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
    )
    from trl import GRPOConfig, GRPOTrainer

    args = GRPOConfig(
        **trl_common(out_dir, threads),
        max_steps=rounds,
        num_generations=GROUP,
        max_completion_length=NEW_TOKENS,
        num_iterations=1,
        beta=0.0,
        logging_steps=1,
    )
    tokenizer = AutoTokenizer.from_pretrained(cache / "policy")
    prompts = json.loads((cache / "prompts.json").read_text())
    clock = round_clock()
    trainer = GRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(cache / "policy"),
        reward_funcs=AutoModelForSequenceClassification.from_pretrained(cache / "reward"),
        args=args,
        train_dataset=Dataset.from_dict({"prompt": [tokenizer.decode(i) for i in prompts["ids"]]}),
        processing_class=tokenizer,
        reward_processing_classes=tokenizer,
        callbacks=[clock],
    )
    trainer.train()
    return {"begin": clock.begin, "ends": clock.ends, "trl": trl.__version__}


def adlf_config(algo: str, mode: str, rounds: int, out_dir: Path):
    from ray_adlf.config import Config, validate

    cfg = Config()
    cfg.run.output_dir = str(out_dir)
    cfg.run.checkpoint_every = 10_000  # only the last round's checkpoint
    cfg.data.max_seq_length = PROMPT_TOKENS + NEW_TOKENS  # prompts keep their last 16 tokens
    cfg.rollout.rollout_engine = "hf"
    cfg.rollout.max_new_tokens = NEW_TOKENS
    cfg.rewards.adlf_alpha = 0.0
    cfg.rewards.use_fluency_reward = False
    cfg.ppo.run_rlhf = True
    cfg.ppo.rl_rounds = rounds
    cfg.ppo.ppo_epochs = 1
    cfg.ppo.ppo_minibatch_size = SEQUENCES
    cfg.ppo.ppo_learning_rate = LEARNING_RATE
    if algo == "ppo":
        cfg.ppo.advantage, cfg.ppo.critic_mode = "gae", "separate"
        cfg.ppo.ppo_batch_size, cfg.ppo.init_kl_coef = SEQUENCES, KL_COEF
    else:
        cfg.ppo.advantage, cfg.ppo.num_samples_per_prompt = "grpo", GROUP
        cfg.ppo.ppo_batch_size, cfg.ppo.init_kl_coef = SEQUENCES // GROUP, 0.0
    cfg.ppo.async_rollout = mode != "sync"
    if cfg.ppo.async_rollout:  # the reference's forward beside the producer, not in the learner
        cfg.ppo.reference_placement = "actor"
    cfg.resources.num_rollout_workers = 2 if mode == "async2" else 1
    return validate(cfg)


def run_adlf(cache: Path, algo: str, mode: str, rounds: int, out_dir: Path) -> dict:
    import ray

    from ray_adlf.data.sample import sample_path
    from ray_adlf.data.validate import read_records
    from ray_adlf.tracking import METRICS_FILE, read_metrics
    from ray_adlf.train.ppo import STAGE, run_rlhf

    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    records = read_records(sample_path()).records
    chosen = [records[i] for i in json.loads((cache / "prompts.json").read_text())["records"]]
    run_rlhf(
        adlf_config(algo, mode, rounds, out_dir),
        chosen,
        str(cache / "policy"),
        str(cache / "reward"),
    )
    ray.shutdown()
    rows = sorted(
        (r for r in read_metrics(out_dir / METRICS_FILE) if r["stage"] == STAGE),
        key=lambda r: r["step"],
    )
    phases = [{k: v for k, v in row.items() if k.startswith("time/")} for row in rows]
    first = phases[0]  # the learner thread's round 1: waiting for its rollout, then training
    return {
        "begin": rows[0]["time"] - first["time/wait_s"] - first["time/learner_s"],
        "lag": statistics.mean(row["lag/mean"] for row in rows[1:]),
        "ends": [row["time"] for row in rows],
        "phases": phases,
        "response_length": statistics.mean(row["response_length"] for row in rows),
    }


def worker(args: argparse.Namespace) -> None:
    """One run in this process; its clock readings to ``--result``."""
    cache, out_dir = Path(args.cache_dir), Path(args.result).parent / "run"
    framework, algo, *mode = args.worker.split("_")
    if framework == "adlf":
        result = run_adlf(cache, algo, mode[0], args.rounds, out_dir)
    elif algo == "ppo":
        result = run_trl_ppo(cache, args.rounds, out_dir, args.threads)
    else:
        result = run_trl_grpo(cache, args.rounds, out_dir, args.threads)
    Path(args.result).write_text(json.dumps(result))


def spawn(kind: str, args: argparse.Namespace, scratch: Path, trl_dirs: dict[str, Path]) -> dict:
    """Run ``kind`` in a fresh process; its result and the wall clock at the spawn."""
    run_dir = Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=scratch))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, __file__, "--worker", kind, "--result", str(run_dir / "out.json")]
    command += ["--rounds", str(args.rounds), "--cache_dir", args.cache_dir]
    command += ["--threads", str(args.threads)]
    framework, algo, *_ = kind.split("_")
    if framework == "trl":
        trl_path = [str(trl_dirs[algo]), *filter(None, [env.get("PYTHONPATH")])]
        env["PYTHONPATH"] = os.pathsep.join(trl_path)
        command = ["nice", "-n", str(RAY_WORKER_NICENESS), *command]
    spawned = time.time()
    with open(run_dir / "log.txt", "w") as log:
        done = subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode:
        tail = (run_dir / "log.txt").read_text().splitlines()[-40:]
        sys.exit(f"{kind} failed (exit {done.returncode}):\n" + "\n".join(tail))
    return {**json.loads((run_dir / "out.json").read_text()), "spawned": spawned}


# ---- the floor and the table ----


def median_seconds(call, repeats: int = 5) -> float:
    """Median wall seconds of ``call()`` over ``repeats`` calls after one warm-up call."""
    call()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def floor(cache: Path, threads: int) -> dict[str, float]:
    """Seconds of one forward+backward on 16 x 48 tokens and of one generate of 16 x 32 new
    tokens, and the policy's parameter count."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(threads)
    model = AutoModelForCausalLM.from_pretrained(cache / "policy")
    shape = (SEQUENCES, PROMPT_TOKENS + NEW_TOKENS)
    ids = torch.randint(
        7, model.config.vocab_size, shape, generator=torch.Generator().manual_seed(0)
    )
    prompts = ids[:, :PROMPT_TOKENS]

    def learn():
        model(input_ids=ids, labels=ids).loss.backward()
        model.zero_grad()

    @torch.no_grad()
    def sample():
        model.generate(
            prompts,
            attention_mask=torch.ones_like(prompts),
            do_sample=True,
            max_new_tokens=NEW_TOKENS,
            min_new_tokens=NEW_TOKENS,
        )

    return {
        "fwd+bwd": median_seconds(learn),
        "generate": median_seconds(sample),
        "params": sum(p.numel() for p in model.parameters()),
    }


LEARNER_PATH = ("wait_s", "learner_s", "other")  # the learner thread's round, in order
PRODUCER_PATH = ("generate_s", "reference_s", "reward_s", "sync_s")  # the producer's


def summarize(runs: list[dict], floor_round_s: float) -> dict:
    """Seconds a round, tokens a second, start-up, seconds a round over ``floor_round_s``; for
    ray_adlf the median seconds and share of each phase (``other``: the round's gap less the
    learner thread's wait and training: Ray Train's report, metrics, the weights hand-over),
    the mean response length and the mean policy lag of the trained samples."""
    gaps = [[b - a for a, b in zip(run["ends"], run["ends"][1:])] for run in runs]
    round_s = statistics.median(gap for run_gaps in gaps for gap in run_gaps)
    out = {
        "s / round": round_s,
        "tokens / s": SEQUENCES * (PROMPT_TOKENS + NEW_TOKENS) / round_s,
        "start-up s": statistics.median(run["begin"] - run["spawned"] for run in runs),
        "x floor": round_s / floor_round_s,
    }
    if "phases" in runs[0]:
        rounds = [  # (gap, phases) of rounds 2..N
            (gap, {key.removeprefix("time/"): value for key, value in phases.items()})
            for run, run_gaps in zip(runs, gaps)
            for gap, phases in zip(run_gaps, run["phases"][1:])
        ]
        rounds = [(gap, {**p, "other": gap - p["wait_s"] - p["learner_s"]}) for gap, p in rounds]
        out["phases"] = {
            key: (
                statistics.median(p[key] for _, p in rounds),
                statistics.median(p[key] / gap for gap, p in rounds),
            )
            for key in (*PRODUCER_PATH, *LEARNER_PATH)
            if key in rounds[0][1]
        }
        out["response tokens"] = statistics.mean(run["response_length"] for run in runs)
        out["lag"] = statistics.mean(run["lag"] for run in runs)
    return out


def print_table(stats: dict[str, dict], floor_s: dict[str, float], trl: dict[str, str], args):
    learn, sample = floor_s["fwd+bwd"], floor_s["generate"]
    print(
        f"\nbench_ppo, {datetime.datetime.now():%Y-%m-%d %H:%M}: policy "
        f"{floor_s['params'] / 1e6:.2f}M parameters, {SEQUENCES} sequences x "
        f"({PROMPT_TOKENS} + {NEW_TOKENS}) tokens a round, fp32, {args.threads} threads; "
        f"{args.rounds} rounds x {args.repeats} runs of each; "
        f"TRL {trl['ppo']} (PPO), {trl['grpo']} (GRPO)"
    )
    columns = ("TRL", *MODES)
    for algo in ("ppo", "grpo"):
        kinds = [f"trl_{algo}", *(f"adlf_{algo}_{mode}" for mode in MODES)]
        print(f"\n{algo.upper():16}" + "".join(f"{c:>10}" for c in columns))
        print(f"{'':16}{'':10}" + "".join(f"{'ray_adlf':>10}" for _ in MODES) + "  (x TRL)")
        for name in ("s / round", "tokens / s", "start-up s", "x floor"):
            values = [stats[kind][name] for kind in kinds]
            ratios = " ".join(f"{v / values[0]:.2f}" for v in values[1:])
            print(f"{name:16}" + "".join(f"{v:10.2f}" for v in values) + f"  ({ratios})")
        ours = [stats[kind] for kind in kinds[1:]]
        for phase in dict.fromkeys(key for s in ours for key in s["phases"]):
            cells = [s["phases"].get(phase) for s in ours]
            line = "".join(f"{c[0]:6.2f}{c[1]:4.0%}" if c else f"{'-':>10}" for c in cells)
            print(f"{'  ' + phase:16}{'':10}{line}")
        print(f"{'  lag (versions)':16}{'':10}" + "".join(f"{s['lag']:10.2f}" for s in ours))
        print(
            f"{'  response tok.':16}{'':10}"
            + "".join(f"{s['response tokens']:10.1f}" for s in ours)
        )
    print(
        f"\nphases: seconds and share of the round (median of rounds 2..N); the producer's "
        f"({', '.join(PRODUCER_PATH)}) overlap the learner's under async.\n"
        f"floor, plain torch: forward+backward {SEQUENCES} x {PROMPT_TOKENS + NEW_TOKENS} "
        f"{learn:.2f} s, generate {SEQUENCES} x {NEW_TOKENS} {sample:.2f} s, "
        f"together {learn + sample:.2f} s ('x floor' above: seconds a round / this)"
    )


def plot_phases(stats: dict[str, dict], path: Path) -> None:
    """Stacked bars of the round, sync vs async, for PPO and GRPO: for each mode the learner
    thread's round (waiting for the rollout, training, the rest) and beside it the producer's
    phases; the TRL round as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    colours = dict(zip((*PRODUCER_PATH, *LEARNER_PATH), plt.get_cmap("tab10").colors))
    for axis, algo in zip(axes, ("ppo", "grpo")):
        labels = []
        for slot, mode in enumerate(("sync", "async")):
            phases = stats[f"adlf_{algo}_{mode}"]["phases"]
            for offset, path_keys, side in (
                (-0.2, LEARNER_PATH, "learner"),
                (0.2, PRODUCER_PATH, "producer"),
            ):
                bottom = 0.0
                for key in path_keys:
                    seconds = max(phases.get(key, (0.0, 0.0))[0], 0.0)
                    label = key.removesuffix("_s") if key not in labels else None
                    labels.append(key)
                    axis.bar(
                        slot + offset, seconds, 0.38, bottom=bottom, color=colours[key], label=label
                    )
                    bottom += seconds
                axis.text(slot + offset, bottom, side, ha="center", va="bottom", fontsize=7)
        axis.axhline(stats[f"trl_{algo}"]["s / round"], color="black", linestyle="--", linewidth=1)
        axis.text(
            1.45, stats[f"trl_{algo}"]["s / round"], "TRL", va="bottom", ha="right", fontsize=8
        )
        axis.set_xticks([0, 1], ["sync", "async (K = 1)"])
        axis.set_title(f"{algo.upper()}: seconds a round")
    axes[0].set_ylabel("seconds (median of rounds 2..N)")
    axes[1].legend(fontsize=7, loc="upper right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    args = parse_args()
    if args.worker:
        worker(args)
        return
    cache = Path(args.cache_dir).expanduser()
    args.cache_dir = str(cache)
    build_models(cache)
    trl_dirs = {algo: install_trl(cache, version) for algo, version in TRL_VERSIONS.items()}
    floor_s = floor(cache, args.threads)
    runs: dict[str, list[dict]] = {kind: [] for kind in RUNS}
    with tempfile.TemporaryDirectory() as scratch:
        for _ in range(args.repeats):
            for kind in RUNS:
                runs[kind].append(spawn(kind, args, Path(scratch), trl_dirs))
    floor_round_s = floor_s["fwd+bwd"] + floor_s["generate"]
    stats = {kind: summarize(kind_runs, floor_round_s) for kind, kind_runs in runs.items()}
    trl = {algo: runs[f"trl_{algo}"][0]["trl"] for algo in TRL_VERSIONS}
    print_table(stats, floor_s, trl, args)
    if args.plot:
        plot_phases(stats, Path(args.plot))
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
