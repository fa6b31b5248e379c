"""The ``ray-adlf`` command.

    ray-adlf data validate PATH [--lenient] [--max-bad-fraction F] [--max-line-bytes N]
    ray-adlf data stats PATH [--model_name M]
    ray-adlf data format PATH --token-format {standard,role_markers,turn_markers} [--limit N]
    ray-adlf train [--config FILE.yaml] [flags]     (flags: ``ray-adlf train --help``)
    ray-adlf tune --space FILE.py [--num_samples N] [--scheduler {asha,pbt,fifo}]
                  [--search {random,optuna}] [--rounds_per_trial R] [train flags]
    ray-adlf score --data_path D --model_name M --output OUT.jsonl [reward flags]
    ray-adlf demo [--output_dir DIR]

Errors in input files print ``PATH:LINE: reason`` on stderr and exit 1; bad flags exit 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from ray_adlf.config import ConfigError, add_config_flags, config_from_args
from ray_adlf.data.formats import TOKEN_FORMATS
from ray_adlf.data.sample import sample_path


def _data_path(path: str) -> str:
    return str(sample_path()) if path == "sample" else path


def _read(args: argparse.Namespace):
    from ray_adlf.data.validate import read_records

    return read_records(
        _data_path(args.path),
        lenient=args.lenient,
        max_bad_fraction=args.max_bad_fraction,
        max_line_bytes=args.max_line_bytes,
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


def cmd_train(args: argparse.Namespace) -> int:
    from ray_adlf.train.pipeline import run_pipeline

    summary = run_pipeline(config_from_args(args))
    print(f"outputs in {summary['output_dir']}; run report: {summary.get('report', 'none')}")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from ray_adlf.tune import run_tune_from_args

    outputs = run_tune_from_args(args, config_from_args(args))
    print(f"best config: {outputs['best_config']}; tune report: {outputs['report']}")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from ray_adlf.score import run_score

    print(f"reward parts written to {run_score(config_from_args(args), args.output)}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from ray_adlf.demo import run_demo

    run_demo(args.output_dir)
    return 0


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not in [0, 1]")
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
        type=int,
        default=1 << 20,
        dest="max_line_bytes",
        help="longest accepted line (default 1 MiB)",
    )


TUNE_OWN_FLAGS = ("scheduler",)  # config flags that ``ray-adlf tune`` uses for its own


def add_tune_flags(parser: argparse.ArgumentParser) -> None:
    """The search flags of ``ray-adlf tune`` and ``jobs/tune.py`` (the config flags apart)."""
    parser.add_argument("--space", required=True, help="Python file with def space() -> dict")
    parser.add_argument("--num_samples", type=int, default=4, help="trials (default 4)")
    parser.add_argument(
        "--scheduler",
        choices=("asha", "pbt", "fifo"),
        default="asha",
        dest="tune_scheduler",
        help="trial scheduler (here --scheduler is Tune's; the SFT learning-rate schedule of the "
        "preparation comes from --config)",
    )
    parser.add_argument("--search", choices=("random", "optuna"), default="random")
    parser.add_argument(
        "--rounds_per_trial", type=int, default=0, help="RL rounds per trial (0 = --rl_rounds)"
    )
    parser.add_argument(
        "--perturbation_interval",
        type=int,
        default=1,
        help="PBT: evaluations between perturbations",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ray-adlf", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="check, summarise and render a dataset")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    validate = data_commands.add_parser("validate", help="check a JSONL file")
    _add_read_flags(validate)
    validate.set_defaults(handler=cmd_data_validate)
    stats = data_commands.add_parser("stats", help="rows, turns, scores, token lengths")
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
    render = data_commands.add_parser("format", help="print conversations as rendered")
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

    train = commands.add_parser("train", help="run the configured stages (SFT, RM, RLHF)")
    add_config_flags(train)
    train.set_defaults(handler=cmd_train)

    tune = commands.add_parser("tune", help="Ray Tune search over the RL stage's settings")
    add_config_flags(tune, exclude=TUNE_OWN_FLAGS)
    add_tune_flags(tune)
    tune.set_defaults(handler=cmd_tune)

    score = commands.add_parser(
        "score", help="every reward part of a dataset's assistant turns, as JSONL"
    )
    add_config_flags(score)
    score.add_argument("--output", required=True, help="JSONL file to write")
    score.set_defaults(handler=cmd_score)

    demo = commands.add_parser("demo", help="the whole pipeline on the tiny model and sample")
    demo.add_argument("--output_dir", "--output-dir", default="outputs/demo", dest="output_dir")
    demo.set_defaults(handler=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ray-adlf`` console script; returns the exit code."""
    from ray_adlf.data.validate import DataError
    from ray_adlf.rewards.plugins import RewardPluginError

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (DataError, RewardPluginError) as err:
        print(str(err), file=sys.stderr)
        return 1
    except ConfigError as err:
        print(f"ray-adlf: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
