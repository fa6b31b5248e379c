"""The ``ray-adlf`` command.

    ray-adlf data validate PATH [--lenient] [--max-bad-fraction F] [--max-line-bytes N]
    ray-adlf data stats PATH [--model_name M]
    ray-adlf data format PATH --token-format {standard,role_markers,turn_markers} [--limit N]
    ray-adlf train [--config FILE.yaml] [flags]     (flags: ``ray-adlf train --help``)
    ray-adlf tune --space FILE.py [--num_samples N] [--scheduler {asha,pbt,fifo}]
                  [--search {random,optuna}] [--rounds_per_trial R] [flags]
    ray-adlf score --data_path D --model_name M --output OUT.parquet [reward flags]
    ray-adlf inspect OUTPUT_DIR [--sort PART] [--top N] [--round R] [--html PAGE.html]
    ray-adlf demo [--output_dir DIR]

Every command takes ``--verbose`` (library and Ray output on the console) and ``--debug``
(tracebacks). ``train``, ``tune``, ``score`` and ``demo`` check everything that needs no
training first (``preflight.py``), before Ray starts: a bad flag, file or combination prints
one line ``ray-adlf: error: <flag or file>: <reason>`` and exits 2. A stage that fails while
running prints ``ray-adlf: error: <stage> stage failed: <cause>`` and exits 1; its traceback
is in ``<output_dir>/logs/ray_adlf.log``. ``data validate`` reports bad data as
``PATH:LINE: reason`` and exits 1.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import traceback
from pathlib import Path

from ray_adlf.config import Config, ConfigError, add_config_flags, config_from_args
from ray_adlf.data.formats import TOKEN_FORMATS
from ray_adlf.data.validate import DEFAULT_MAX_ROWS, DEFAULT_MAX_TOTAL_BYTES

log = logging.getLogger("ray_adlf.cli")

TUNE_HIDDEN = {  # SFT details and session flags of `train` that a search does not take
    "scheduler",
    "cosine_cycles",
    "warmup_ratio",
    "weight_decay",
    "max_grad_norm",
    "gradient_accumulation_steps",
    "use_contrastive",
    "contrastive_temp",
    "contrastive_weight",
    "contrastive_threshold",
    "use_self_critique",
    "critique_weight",
    "resume",
    "stop_after_steps",
    "checkpoint_every",
    "keep_checkpoints",
}
SCORE_SECTIONS = ("data", "model", "rewards", "debate")
SCORE_EXTRA = {"reward_model_path", "num_reward_workers", "reward_num_cpus", "critic_num_cpus"}
SCORE_EXTRA |= {"seed", "output_dir", "use_gpu", "temperature", "ledger_max_chars"}


def _read(args: argparse.Namespace):
    from ray_adlf.data.validate import read_records
    from ray_adlf.preflight import data_file

    return read_records(
        data_file(args.path),
        lenient=args.lenient,
        max_bad_fraction=args.max_bad_fraction,
        max_line_bytes=args.max_line_bytes,
        max_total_bytes=args.max_total_bytes,
        max_rows=args.max_rows,
    )


def cmd_data_validate(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    result = _read(args)  # lenient mode logs one summary line per reason on stderr
    seconds = max(time.perf_counter() - started, 1e-9)
    skipped = result.rows - len(result.records)
    print(
        f"{args.path}: {len(result.records)} valid rows of {result.rows}"
        f"{f' ({skipped} skipped)' if skipped else ''}; "
        f"{result.rows / seconds:,.0f} rows/s"
    )
    return 0


def cmd_data_stats(args: argparse.Namespace) -> int:
    from ray_adlf.data.stats import dataset_stats, format_stats
    from ray_adlf.models.loading import load_tokenizer

    result = _read(args)
    tokenizer = load_tokenizer(args.model_name)
    print("\n".join(format_stats(dataset_stats(result.records, tokenizer, args.token_format))))
    return 0


def cmd_data_format(args: argparse.Namespace) -> int:
    from ray_adlf.data.formats import prepare_tokenizer, render_conversation
    from ray_adlf.models.loading import load_tokenizer

    result = _read(args)
    tokenizer = load_tokenizer(args.model_name)
    prepare_tokenizer(tokenizer, args.token_format)
    for record in result.records[: args.limit]:
        text, spans = render_conversation(record.conversation, tokenizer, args.token_format)
        marked, cursor = [], 0
        for start, end in spans:
            marked += [text[cursor:start], "[[", text[start:end], "]]"]
            cursor = end
        marked.append(text[cursor:])
        print(f"--- {record.source}:{record.line} (score {record.score:g})")
        print("".join(marked))
    print(f"[[...]] marks the tokens that carry SFT labels ({args.token_format} format)")
    return 0


def start_ray(cfg: Config, verbose: bool) -> None:
    """The run log under ``--output_dir``, then Ray (quietly, ``console.ray_init_options``)
    unless this process is connected already."""
    from ray_adlf.console import attach_run_log, ray_init_options

    log.debug("run log: %s", attach_run_log(cfg.run.output_dir))
    import ray

    if not ray.is_initialized():
        ray.init(**ray_init_options(verbose))


def train(cfg: Config, verbose: bool) -> dict:
    """Check, start Ray, run the pipeline, say where everything is (``train`` and ``demo``)."""
    from ray_adlf.preflight import check_cluster, check_train

    plan = check_train(cfg)
    log.info(
        "data: %d training and %d held-out records from %s",
        len(plan.train_records),
        len(plan.eval_records),
        cfg.data.data_path,
    )
    for note in plan.stages.notes:
        log.info(note)
    log.info("stages: %s -> %s", " -> ".join(plan.stages.run), cfg.run.output_dir)
    start_ray(cfg, verbose)
    check_cluster(cfg, plan.stages)
    from ray_adlf.train.pipeline import run_pipeline

    summary = run_pipeline(cfg, plan)
    log.info("outputs in %s; run report: %s", summary["output_dir"], summary.get("report"))
    return summary


def cmd_train(args: argparse.Namespace) -> int:
    train(config_from_args(args), args.verbose)
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from ray_adlf.preflight import check_paths, local_cpus, read_data, starts_local_ray
    from ray_adlf.tune_plan import TuneOptions, plan_search

    cfg = config_from_args(args)
    check_paths(cfg)
    options = TuneOptions(
        args.space,
        args.num_samples,
        args.tune_scheduler,
        args.search,
        args.rounds_per_trial,
        args.perturbation_interval,
        args.max_concurrent_trials,
    )
    if starts_local_ray():
        plan_search(cfg, options, local_cpus())
    train_records, eval_records = read_data(cfg)
    start_ray(cfg, args.verbose)
    from ray_adlf.tune import run_tune

    outputs = run_tune(cfg, options, train_records, eval_records)
    log.info("best config: %s; tune report: %s", outputs["best_config"], outputs["report"])
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from ray_adlf.preflight import check_output_dir, check_paths, read_data

    cfg = config_from_args(args)
    check_paths(cfg)
    check_output_dir(str(Path(args.output).parent))
    read_data(cfg)
    start_ray(cfg, args.verbose)
    from ray_adlf.score import run_score

    log.info("reward parts written to %s", run_score(cfg, args.output))
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from ray_adlf.ledger import analysis
    from ray_adlf.ledger.page import write_page
    from ray_adlf.ledger.store import read_ledger
    from ray_adlf.ledger.terminal import inspect_lines

    try:
        data = analysis.columns(read_ledger(Path(args.path)))
    except (FileNotFoundError, OSError, ValueError) as err:
        raise ConfigError(str(err)) from err
    try:
        analysis.column_name(data, args.sort)
    except KeyError:
        known = ", ".join(analysis.shown_parts(data))
        raise ConfigError(f"--sort {args.sort}: not a part of this ledger ({known})") from None
    try:
        lines = inspect_lines(data, args.path, args.sort, args.top, args.round)
    except ValueError as err:
        raise ConfigError(str(err)) from err
    print("\n".join(lines))
    if args.html:
        page = write_page(data, args.path, Path(args.html), args.sort, args.top, args.round)
        print(f"page: {page}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from ray_adlf.demo import demo_config, print_outcome

    summary = train(demo_config(args.output_dir), args.verbose)
    print_outcome(summary)
    return 0


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not in [0, 1]")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def _add_read_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="JSONL or JSONL.gz file ('sample' = the bundled sample)")
    parser.add_argument("--lenient", action="store_true", help="skip bad rows within budget")
    parser.add_argument(
        "--max-bad-fraction",
        "--max_bad_fraction",
        type=_fraction,
        default=0.01,
        dest="max_bad_fraction",
        help="lenient budget (default 0.01)",
    )
    parser.add_argument(
        "--max-line-bytes",
        "--max_line_bytes",
        type=_positive_int,
        default=1 << 20,
        dest="max_line_bytes",
        help="longest accepted line (default 1 MiB)",
    )
    parser.add_argument(
        "--max-total-bytes",
        "--max_total_bytes",
        type=_positive_int,
        default=DEFAULT_MAX_TOTAL_BYTES,
        dest="max_total_bytes",
        help="most bytes read from the file, after decompression (default 2 GiB)",
    )
    parser.add_argument(
        "--max-rows",
        "--max_rows",
        type=_positive_int,
        default=DEFAULT_MAX_ROWS,
        dest="max_rows",
        help="most lines read (default 10,000,000)",
    )


def add_tune_flags(parser: argparse.ArgumentParser) -> None:
    """The search flags of ``ray-adlf tune`` and ``jobs/tune.py`` (the config flags apart)."""
    search = parser.add_argument_group("search options")
    search.add_argument("--space", required=True, help="Python file with def space() -> dict")
    search.add_argument("--num_samples", type=_positive_int, default=4, help="trials (default 4)")
    search.add_argument(
        "--scheduler",
        choices=("asha", "pbt", "fifo"),
        default="asha",
        dest="tune_scheduler",
        help="trial scheduler (the SFT learning-rate schedule comes from --config)",
    )
    search.add_argument("--search", choices=("random", "optuna"), default="random")
    search.add_argument(
        "--rounds_per_trial", type=int, default=0, help="RL rounds per trial (0 = --rl_rounds)"
    )
    search.add_argument(
        "--perturbation_interval",
        type=_positive_int,
        default=1,
        help="PBT: evaluations between perturbations",
    )
    search.add_argument(
        "--max_concurrent_trials",
        type=int,
        default=0,
        help="trials at once (0 = one per 2 cluster CPUs); each gets that share of the CPUs",
    )


def _common_flags() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--verbose", action="store_true", help="library, Ray and worker output on the console"
    )
    common.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    return common


def tune_flags() -> list[str]:
    from ray_adlf.config import leaf_fields

    return [flag for flag in leaf_fields() if flag not in TUNE_HIDDEN]


def score_flags() -> list[str]:
    from ray_adlf.config import leaf_fields

    return [
        flag
        for flag, leaf in leaf_fields().items()
        if leaf.section in SCORE_SECTIONS or flag in SCORE_EXTRA
    ]


def build_parser() -> argparse.ArgumentParser:
    common = _common_flags()
    parser = argparse.ArgumentParser(prog="ray-adlf", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="check, summarise and render a dataset")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    validate = data_commands.add_parser("validate", help="check a JSONL file", parents=[common])
    _add_read_flags(validate)
    validate.set_defaults(handler=cmd_data_validate)
    stats = data_commands.add_parser(
        "stats", help="rows, turns, scores, token lengths", parents=[common]
    )
    _add_read_flags(stats)
    stats.add_argument("--model_name", "--model-name", default="tiny", dest="model_name")
    stats.add_argument(
        "--token-format",
        "--token_format",
        default="standard",
        choices=TOKEN_FORMATS,
        dest="token_format",
    )
    stats.set_defaults(handler=cmd_data_stats)
    render = data_commands.add_parser(
        "format", help="print conversations as rendered", parents=[common]
    )
    _add_read_flags(render)
    render.add_argument(
        "--token-format",
        "--token_format",
        required=True,
        choices=TOKEN_FORMATS,
        dest="token_format",
    )
    render.add_argument("--limit", type=int, default=3)
    render.add_argument("--model_name", "--model-name", default="tiny", dest="model_name")
    render.set_defaults(handler=cmd_data_format)

    train_parser = commands.add_parser(
        "train", help="run the configured stages (SFT, RM, RLHF)", parents=[common]
    )
    add_config_flags(train_parser)
    train_parser.set_defaults(handler=cmd_train)

    tune = commands.add_parser(
        "tune",
        help="Ray Tune search over the RL stage's settings",
        parents=[common],
        epilog="Other settings (the SFT objectives and schedule): --config FILE.yaml.",
    )
    add_tune_flags(tune)
    add_config_flags(tune, tune_flags())
    tune.set_defaults(handler=cmd_tune)

    score = commands.add_parser(
        "score",
        help="every reward part of a dataset's assistant turns, in the ledger's columns",
        parents=[common],
    )
    score.add_argument(
        "--output", required=True, help="file to write: Parquet, or JSON lines if it ends .jsonl"
    )
    add_config_flags(score, score_flags())
    score.set_defaults(handler=cmd_score)

    inspect = commands.add_parser(
        "inspect",
        help="what each reward part did in a run: its ledger (<output_dir>/rollouts)",
        parents=[common],
    )
    inspect.add_argument(
        "path", help="a run's output directory, its rollouts/, or a `ray-adlf score` output"
    )
    inspect.add_argument("--sort", default="reward", help="part to rank samples by (reward)")
    inspect.add_argument("--top", type=_positive_int, default=3, help="samples shown (3)")
    inspect.add_argument("--round", type=int, help="round to show (default the last)")
    inspect.add_argument("--html", help="also write one static page with plots and a table")
    inspect.set_defaults(handler=cmd_inspect)

    demo = commands.add_parser(
        "demo", help="the whole pipeline on the tiny model and sample", parents=[common]
    )
    demo.add_argument("--output_dir", "--output-dir", default="outputs/demo", dest="output_dir")
    demo.set_defaults(handler=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ray-adlf`` console script; returns the exit code."""
    from ray_adlf.console import configure_console, run_log_path
    from ray_adlf.data.validate import DataError
    from ray_adlf.rewards.plugins import RewardPluginError
    from ray_adlf.stages import StageFailed

    args = build_parser().parse_args(argv)
    configure_console(args.verbose)
    try:
        return args.handler(args)
    except (ConfigError, DataError, RewardPluginError) as err:
        if args.debug:
            traceback.print_exc()
        if args.command == "data" and isinstance(err, DataError):
            print(str(err), file=sys.stderr)
            return 1
        print(f"ray-adlf: error: {err}", file=sys.stderr)
        return 2
    except StageFailed as err:
        log.debug("traceback", exc_info=err.cause)
        if args.debug:
            traceback.print_exception(err.cause)
        print(f"ray-adlf: error: {err} (traceback in {run_log_path()})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ray-adlf: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
