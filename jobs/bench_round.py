"""Benchmark the RL stage of ``ray-adlf demo``: model copies, peak memory, bytes a round, seconds.

With ``demo_config`` and ``--rounds`` rounds, the bench starts its own local Ray (``RAY_ADDRESS``
unset), runs the stages before RLHF (or reuses their outputs in ``--output_dir``), deletes any
earlier ``rlhf`` run and measures only a ``run_pipeline`` of ``rlhf`` alone. It uses whichever
``ray_adlf`` is importable, named in the header (an older checkout, since 0c88d79: run from outside
the repository with ``PYTHONPATH=/tmp/before``). Nothing in ray_adlf is patched: the driver and (by
a ``worker_process_setup_hook``) every Ray worker log events to ``<output_dir>/bench_trace/`` from
``ray.put`` and, wrapped when first imported, transformers' ``PreTrainedModel.from_pretrained`` and
torch's ``scatter_object_list``/``broadcast_object_list``. About 5 minutes on 2 cores.

1. Model copies: the ``from_pretrained`` calls (each a weight copy its process holds) by process
   kind, as causal LM (``*ForCausalLM``), reward model (``*ForSequenceClassification``) or other.
2. Peak memory: the largest summed RSS of the driver and its descendants (``psutil``: no other
   cluster counts), sampled every ``--sample_s`` s; an upper bound (shared pages count per process).
   A process's kind is its last Ray title but ``ray::IDLE`` (an exiting actor's empty title keeps
   the kind it had); processes never titled are the Ray system row.
3. Bytes a round (events between the metrics rows of rounds k-1 and k), mean over rounds 2..N:
   ``PackedWeights`` puts and their ``nbytes``; the ``len(pickle.dumps(obj))`` rank 0 sends the
   other ranks (scatter: their objects; broadcast: the object times world - 1) and in all; as torch
   pads scatter tensors, the JSON's ``batch_wire_bytes`` is ``max(sizes) * (world - 1)``.
4. Seconds: gaps between metrics rows and their ``time/*`` phases, mean over rounds 2..N (a phase
   over the rounds having it: ``eval_s`` only at eval rounds); start-up: from the RL stage's start
   to round 1's (its row's time less its phases).
"""

import argparse
import contextlib
import dataclasses
import functools
import importlib.machinery
import inspect
import json
import logging
import os
import pickle
import shutil
import statistics
import subprocess
import sys
import threading
import time
import types
from collections import defaultdict
from pathlib import Path

import psutil
import ray
from demo_stages import DEMO_ROUNDS, clear_rl_stage, earlier_stages, rl_stage_config

import ray_adlf
from ray_adlf import console, tracking
from ray_adlf.stages import RLHF, StagePlan
from ray_adlf.train import pipeline

SYSTEM, DRIVER = "Ray system (gcs, raylet, dashboard)", "driver (bench)"
MODELS = ("causal_lm", "reward_model", "other")
SENT = {"scatter_object_list": "scatter_object_input_list", "broadcast_object_list": "object_list"}
BATCH_KEYS = ("batch_bytes_to_other_ranks", "batch_bytes_pickled_total", "batch_wire_bytes")
ROUND_KEYS = ("weight_puts", "weight_bytes", *BATCH_KEYS)  # the figures of bytes a round


def install_tracing(trace_dir: str) -> None:
    """Log from_pretrained, ray.put and torch's object collectives to ``trace_dir`` (docstring)."""
    os.makedirs(trace_dir, exist_ok=True)
    out = open(f"{trace_dir}/events.{os.getpid()}.jsonl", "a", buffering=1)  # noqa: SIM115
    lock = threading.Lock()

    def event(kind: str, **fields) -> None:
        cmdline = Path("/proc/self/cmdline").read_bytes()  # the process's Ray title, as it is now
        title = cmdline.split(b"\0")[0].decode(errors="replace").strip()
        package = getattr(sys.modules.get("ray_adlf"), "__file__", None)
        row = dict(t=time.time(), pid=os.getpid(), title=title, event=kind, ray_adlf=package)
        with lock:
            out.write(json.dumps({**row, **fields}) + "\n")

    def patch_transformers(module) -> None:
        original = module.PreTrainedModel.from_pretrained.__func__

        @functools.wraps(original)
        def from_pretrained(cls, *args, **kwargs):
            result = original(cls, *args, **kwargs)
            model = result[0] if isinstance(result, tuple) else result
            path = str(args[0] if args else kwargs.get("pretrained_model_name_or_path"))
            numel = sum(p.numel() for p in model.parameters())
            nbytes = sum(p.numel() * p.element_size() for p in model.parameters())
            event("load", cls=type(model).__name__, path=path, numel=numel, nbytes=nbytes)
            return result

        module.PreTrainedModel.from_pretrained = classmethod(from_pretrained)

    def patch_distributed(dist) -> None:  # logs each object's pickled size on the source rank
        for name in SENT:
            original = getattr(dist, name)

            @functools.wraps(original)
            def wrapper(*args, _name=name, _original=original, **kwargs):  # bound per name
                try:
                    bound = inspect.signature(_original).bind(*args, **kwargs).arguments
                    objects, src = bound.get(SENT[_name]), bound.get("src", 0)
                    if objects is not None and dist.get_rank() == src:
                        sizes = [len(pickle.dumps(obj)) for obj in objects]
                        event(_name, sizes=sizes, src=src, world=dist.get_world_size())
                except Exception as error:  # tracing must never break the process
                    print(f"bench_round: tracing {_name}: {error!r}", file=sys.stderr)
                return _original(*args, **kwargs)

            setattr(dist, name, wrapper)

    put = ray.put

    def traced_put(value, *args, **kwargs):
        ref = put(value, *args, **kwargs)
        kind = type(value)
        nbytes = getattr(value, "nbytes", None) if kind.__name__ == "PackedWeights" else None
        event("put", type=f"{kind.__module__}.{kind.__qualname__}", nbytes=nbytes)
        return ref

    ray.put = traced_put
    callbacks = {"transformers.modeling_utils": patch_transformers}
    callbacks["torch.distributed"] = patch_distributed
    for name in [name for name in callbacks if name in sys.modules]:
        callbacks.pop(name)(sys.modules[name])  # imported already: wrap now

    def find_spec(name, path, target=None):  # a meta path finder: wraps the module once it ran
        spec = importlib.machinery.PathFinder.find_spec(name, path) if name in callbacks else None
        if spec is not None:
            run, callback = spec.loader.exec_module, callbacks[name]

            def exec_module(module):
                run(module)
                try:
                    callback(module)
                except Exception as error:  # tracing must never break the process
                    print(f"bench_round: tracing {name}: {error!r}", file=sys.stderr)

            spec.loader.exec_module = exec_module
        return spec

    sys.meta_path.insert(0, types.SimpleNamespace(find_spec=find_spec))


def process_kind(cmdline: list[str]) -> str:
    title = cmdline[0].strip() if cmdline else ""
    if title.startswith("ray::"):
        return "ray::" + title[5:].split(".")[0].split()[0] if title[5:].strip() else "ray::?"
    return SYSTEM


class Sampler(threading.Thread):
    """Every ``period`` s: RSS of the driver and all its descendant processes (docstring)."""

    def __init__(self, period: float) -> None:
        super().__init__(daemon=True)
        self.period, self.stopped, self.peak_total, self.samples = period, threading.Event(), 0, 0
        self.kind, self.peak_rss, self.peak_kind_total = {}, defaultdict(int), defaultdict(int)

    def run(self) -> None:
        me, started = psutil.Process(), 0.0
        while not self.stopped.wait(max(0.0, self.period - (time.monotonic() - started))):
            started, total, by_kind = time.monotonic(), 0, defaultdict(int)
            for proc in [me, *me.children(recursive=True)]:
                try:
                    rss = proc.memory_info().rss
                    kind = DRIVER if proc.pid == me.pid else process_kind(proc.cmdline())
                except psutil.Error:
                    continue
                if proc.pid not in self.kind or kind not in ("ray::IDLE", SYSTEM):
                    self.kind[proc.pid] = kind  # an exiting actor's empty title keeps its kind
                total += rss
                by_kind[self.kind[proc.pid]] += rss
                self.peak_rss[proc.pid] = max(self.peak_rss[proc.pid], rss)
            for kind, rss in by_kind.items():
                self.peak_kind_total[kind] = max(self.peak_kind_total[kind], rss)
            self.peak_total, self.samples = max(self.peak_total, total), self.samples + 1


def read_events(trace_dir: Path, start: float, end: float) -> list[dict]:
    rows = []
    for path in sorted(trace_dir.glob("events.*.jsonl")):
        for line in path.read_text().splitlines():
            with contextlib.suppress(ValueError):  # a line torn by a killed process
                rows.append(json.loads(line))
    return sorted((row for row in rows if start <= row["t"] <= end), key=lambda row: row["t"])


def mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def by_process_kind(sampler: Sampler, events: list[dict]) -> dict:
    """Processes, peak RSS and model loads per process kind; the model copies in all."""
    processes = defaultdict(lambda: {"count": 0, "peak_rss_max": 0, "pids": [], "loads": {}})
    for pid, kind in sampler.kind.items():
        row = processes[kind]
        row["count"] += 1
        row["pids"].append(pid)
        row["peak_rss_max"] = max(row["peak_rss_max"], sampler.peak_rss[pid])
    copies = dict.fromkeys([*MODELS, *(f"{model}_bytes" for model in MODELS)], 0)
    loads, policy_params = [], 0
    for e in (e for e in events if e["event"] == "load"):
        kind = sampler.kind.get(e["pid"]) or process_kind([e["title"]])
        kind = DRIVER if e["pid"] == os.getpid() else kind
        which = "reward_model" if e["cls"].endswith("ForSequenceClassification") else "other"
        which = "causal_lm" if e["cls"].endswith("ForCausalLM") else which
        processes[kind]["loads"][which] = processes[kind]["loads"].get(which, 0) + 1
        copies[which] += 1
        copies[f"{which}_bytes"] += e["nbytes"]
        loads.append({"kind": kind, "cls": e["cls"], "path": e["path"], "numel": e["numel"]})
        if which == "causal_lm":
            policy_params = max(policy_params, e["numel"])
    order = sorted(processes, key=lambda k: (k in (SYSTEM, DRIVER), k == DRIVER, k))
    peaks = sampler.peak_kind_total
    processes = {k: {**processes[k], "peak_rss_kind": peaks.get(k, 0)} for k in order}
    return dict(policy_params=policy_params, processes=processes, model_copies=copies, loads=loads)


def per_round(events: list[dict], rows: list[dict]) -> dict:
    """Weights pushed and batch bytes, mean over rounds 2..N (``rows``: one per round, in order)."""
    rounds, collectives = [], set()
    for before, row in zip(rows, rows[1:]):
        inside = [e for e in events if before["time"] < e["t"] <= row["time"]]
        weights = [e["nbytes"] or 0 for e in inside if e.get("type", "").endswith("PackedWeights")]
        sent = [e for e in inside if e["event"] in SENT]
        to_others = total = wire = 0
        for e in sent:
            sizes, others, scatter = e["sizes"], e["world"] - 1, e["event"] == "scatter_object_list"
            total += sum(sizes)
            to_others += sum(sizes) - sizes[e["src"]] if scatter else sum(sizes) * others
            wire += (max(sizes) if scatter else sum(sizes)) * others
        rounds.append(dict(zip(ROUND_KEYS, (len(weights), sum(weights), to_others, total, wire))))
        collectives.add("+".join(sorted({e["event"] for e in sent})) or "none")
    out = {"rounds": len(rounds), **{key: mean([r[key] for r in rounds]) for key in ROUND_KEYS}}
    per_put = [r["weight_bytes"] / r["weight_puts"] for r in rounds if r["weight_puts"]]
    return {**out, "collective": sorted(collectives), "packed_state_dict_bytes": mean(per_put)}


def timings(rows: list[dict]) -> dict:
    """Seconds a round and per ``time/*`` phase, mean over rounds 2..N (docstring)."""
    later = rows[1:]  # rows: one per round, in order; round 1 left out
    gaps = [b["time"] - a["time"] for a, b in zip(rows, later)]
    plain = mean([gap for gap, row in zip(gaps, later) if "time/eval_s" not in row])
    phases = {}
    for key in sorted({k for row in later for k in row if k.startswith("time/")}):
        values = [row[key] for row in later if key in row]
        phases[key.removeprefix("time/")] = {"mean_s": mean(values), "rounds": len(values)}
    return dict(round_s=mean(gaps), round_s_without_eval=plain, rounds=len(gaps), phases=phases)


def checkout_label(package_file: str) -> str:
    root = Path(package_file).resolve().parent.parent
    git = functools.partial(subprocess.run, cwd=root, capture_output=True, text=True)
    commit = git(["git", "rev-parse", "--short", "HEAD"]).stdout.strip()
    dirty = git(["git", "status", "--porcelain", "--", "ray_adlf"]).stdout.strip()
    return f"{root} @ {commit}{' + uncommitted changes' if dirty else ''}" if commit else str(root)


def mib(value: float | None) -> str:
    return "-" if value is None else f"{value / 2**20:,.1f}"


def table(figures: dict) -> str:
    (load_start, load_end, cores), rounds = figures["loadavg_1min"], figures["rounds"]
    copies, moved, times = figures["model_copies"], figures["per_round"], figures["timings"]
    params, peak, n = figures["policy_params"], mib(figures["peak_rss_total"]), times["rounds"]
    lines = [
        f"RL stage of `ray-adlf demo` settings, {rounds} rounds: {figures['checkout']}",
        f"(tiny policy: {params:,} parameters = {mib(params * 4)} MiB at 4 bytes; RL stage "
        f"{figures['stage_s']:.0f} s; 1-min load average {load_start:.1f} at its start, "
        f"{load_end:.1f} at its end, {cores} cores)",
        "",
        "| process kind | processes | peak RSS/process MiB | peak RSS of kind MiB "
        "| causal LM loads | reward model loads | other loads |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, row in figures["processes"].items():
        loads = " | ".join(str(row["loads"].get(model, 0)) for model in MODELS)
        rss = f"{mib(row['peak_rss_max'])} | {mib(row['peak_rss_kind'])}"
        lines.append(f"| {kind} | {row['count']} | {rss} | {loads} |")
    count = sum(row["count"] for row in figures["processes"].values())
    phases = ", ".join(
        f"{name} {p['mean_s']:.3f}" + ("" if p["rounds"] == n else f" ({p['rounds']} rounds)")
        for name, p in times["phases"].items()
    )
    to_others, pickled = ((moved[key] or 0) / 1024 for key in BATCH_KEYS[:2])
    lines += [
        f"| **all** | {count} | | **peak {peak}** | {' | '.join(str(copies[m]) for m in MODELS)} |",
        "",
        f"- model copies (causal LM + reward model weights loaded in the RL stage): "
        f"**{copies['causal_lm'] + copies['reward_model']}** "
        f"({mib(copies['causal_lm_bytes'] + copies['reward_model_bytes'])} MiB of parameters); "
        f"other models loaded: {copies['other']} ({mib(copies['other_bytes'])} MiB)",
        f"- peak memory (summed RSS of the cluster's processes and the driver, sampled every "
        f"{figures['sample_s']} s): **{peak} MiB**",
        f"- weights pushed a round: {moved['weight_puts'] or 0:g} `ray.put` x "
        f"{mib(moved['packed_state_dict_bytes'])} MiB = **{mib(moved['weight_bytes'])} MiB**",
        f"- batch from rank 0 a round ({', '.join(moved['collective'])}): **{to_others:,.1f} KiB** "
        f"pickled to the other rank(s) ({pickled:,.1f} KiB pickled in all)",
        f"- start-up: **{figures['first_round_s']:.1f} s** from the RL stage's start to round 1's "
        "(actors, worker group, learner, first weights push, the evaluation before round 1)",
        f"- seconds a round (rounds 2..{rounds}): **{times['round_s']:.2f}** "
        f"({times['round_s_without_eval']:.2f} without the evaluation round)",
        f"- seconds per phase (mean, rounds 2..{rounds}; as the library times them, "
        f"so parts nest: debate_s is inside reward_s): {phases}",
    ]
    return "\n".join(lines)


def first_round_start(row: dict) -> float:
    """When round 1 began: its row's time less its phases (``debate_s`` is inside ``reward_s``;
    the evaluation before round 1 is not part of round 1)."""
    nested = ("time/debate_s", "time/eval_s")
    return row["time"] - sum(v for k, v in row.items() if k.startswith("time/") and k not in nested)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", default="outputs/bench_round")
    parser.add_argument("--rounds", type=int, default=DEMO_ROUNDS)
    parser.add_argument("--sample_s", type=float, default=0.2)
    args = parser.parse_args(argv)
    if os.environ.get("RAY_ADDRESS"):
        parser.error("RAY_ADDRESS is set: the bench starts (and measures) its own local Ray")
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("ray_adlf.train.pipeline").setLevel(logging.INFO)
    output_dir = Path(args.output_dir).resolve()
    cfg, plan = rl_stage_config(output_dir, args.rounds)
    trace_dir = output_dir / "bench_trace"
    shutil.rmtree(trace_dir, ignore_errors=True)
    install_tracing(str(trace_dir))

    def hook() -> None:  # the same tracing in every Ray worker process
        install_tracing(str(trace_dir))

    options = console.ray_init_options(False)
    options["runtime_env"] = {**options.get("runtime_env", {}), "worker_process_setup_hook": hook}
    ray.init(**options)
    try:
        earlier_stages(cfg, plan)
        clear_rl_stage(cfg)
        load_before, sampler = os.getloadavg()[0], Sampler(args.sample_s)
        rl_plan = dataclasses.replace(plan, stages=StagePlan(run=[RLHF]))
        sampler.start()
        started_at, started = time.time(), time.monotonic()
        summary = pipeline.run_pipeline(cfg, rl_plan)
        stage_s, ended_at, load_after = time.monotonic() - started, time.time(), os.getloadavg()[0]
        sampler.stopped.set()
        sampler.join()
    finally:
        ray.shutdown()
    if not summary.get(RLHF, {}).get("complete"):
        print(f"the RL stage did not finish: {summary.get(RLHF)}", file=sys.stderr)
        return 1

    events = read_events(trace_dir, started_at, ended_at)
    packages = {e["ray_adlf"] for e in events if e.get("ray_adlf")}
    if packages - {ray_adlf.__file__}:
        print(f"warning: processes imported other ray_adlf copies: {packages}", file=sys.stderr)
    rows = tracking.read_metrics(output_dir / tracking.METRICS_FILE)
    rows = [row for row in rows if row.get("stage") == RLHF and row.get("time", 0) >= started_at]
    by_step = {row["step"]: row for row in rows}  # the last row of each step
    rounds = [by_step[step] for step in sorted(by_step) if by_step[step].get("round")]
    figures = {
        "checkout": checkout_label(ray_adlf.__file__),
        "rounds": args.rounds,
        "stage_s": stage_s,
        "first_round_s": first_round_start(rounds[0]) - started_at,
        "sample_s": args.sample_s,
        "loadavg_1min": [load_before, load_after, os.cpu_count()],
        "samples": sampler.samples,
        **by_process_kind(sampler, events),
        "peak_rss_total": sampler.peak_total,
        "per_round": per_round(events, rounds),
        "timings": timings(rounds),
        "metrics_rounds": len(rounds),
    }
    print(table(figures))
    print("JSON: " + json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
