"""Run report: the metrics JSONL (``ray_adlf.tracking``) -> PNG plots -> ``report.md``.

Series: for a stage and a metric key, the ``(step, value)`` pairs of the rows that have the key,
one per step; when a step was logged twice (a restart re-runs steps after the last checkpoint)
the later row wins. Plots per stage, drawn with matplotlib's Agg backend into ``plots/``:

- ``<stage>_loss.png``: training ``loss`` and held-out ``eval_loss`` against optimizer step
- ``<stage>_learning_rate.png``: ``learning_rate``
- ``<stage>_objectives.png``: every per-objective loss (keys ending ``_loss`` other than
  ``loss``, ``eval_loss``, ``train_loss``), training solid, held-out (``eval_*``) dashed

The RLHF stage (``rlhf``, x axis = round) has its own set: ``reward`` (the ADLF reward and every
reward part: external, internal and each internal signal), ``kl`` and ``beta``, ``ppo`` (policy
and value loss, entropy, clip fraction, approx KL), ``lengths`` (response length), ``mismatch``
(engine vs learner logprobs), ``timings`` (seconds per phase) and ``eval`` (the held-out
objective, when evaluated).

``report.md`` holds the caller's summary lines and, per stage, a table of each plotted series'
first and last value, then the plots; with an RL ledger (``ray_adlf.ledger``), a section that
links it, repeats its reward-hacking warnings and shows ``rlhf_part_correlation.png``: each
internal part's correlation with the external reward.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ray_adlf.rewards.catalog import INTERNAL_SIGNALS
from ray_adlf.tracking import read_metrics

TOTAL_KEYS = ("loss", "eval_loss", "train_loss")
REWARD_PARTS = ("reward", "external", "internal", *INTERNAL_SIGNALS)


def metric_series(rows: list[dict[str, Any]], stage: str, key: str) -> list[tuple[int, float]]:
    """``(step, value)`` pairs for ``key`` in ``stage``, sorted by step, the later row winning."""
    by_step = {
        row["step"]: float(row[key]) for row in rows if row.get("stage") == stage and key in row
    }
    return sorted(by_step.items())


def objective_keys(rows: list[dict[str, Any]], stage: str) -> list[str]:
    """The per-objective loss keys of ``stage``, sorted."""
    keys = {key for row in rows if row.get("stage") == stage for key in row}
    return sorted(k for k in keys if k.endswith("_loss") and k not in TOTAL_KEYS)


def _plot(
    series: dict[str, list[tuple[int, float]]], title: str, ylabel: str, xlabel: str, path: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, 4.0))
    for label, points in series.items():
        steps, values = zip(*points)
        style = "--o" if label.startswith("eval") else "-"
        axes.plot(steps, values, style, label=label, markersize=3)
    axes.set(title=title, xlabel=xlabel, ylabel=ylabel)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def wanted_plots(rows: list[dict[str, Any]], stage: str) -> dict[str, tuple[str, list[str]]]:
    """``{file name: (y label, metric keys)}`` for a stage (module docstring)."""
    if stage != "rlhf":
        return {
            f"{stage}_loss.png": ("loss", ["loss", "eval_loss"]),
            f"{stage}_learning_rate.png": ("learning rate", ["learning_rate"]),
            f"{stage}_objectives.png": ("per-objective loss", objective_keys(rows, stage)),
        }
    keys = sorted({key for row in rows if row.get("stage") == stage for key in row})
    return {
        "rlhf_reward.png": ("reward (parts)", [k for k in REWARD_PARTS if k in keys]),
        "rlhf_kl.png": ("KL per sequence", ["kl"]),
        "rlhf_beta.png": ("KL coefficient beta", ["beta"]),
        "rlhf_ppo.png": (
            "PPO statistics",
            [k for k in keys if k.startswith("ppo/") and k != "ppo/grad_norm"],
        ),
        "rlhf_lengths.png": ("response tokens", ["response_length"]),
        "rlhf_mismatch.png": ("mean |engine - learner| logprob", ["logprob_mismatch"]),
        "rlhf_timings.png": ("seconds", [k for k in keys if k.startswith("time/")]),
        "rlhf_eval.png": ("held-out evaluation", [k for k in keys if k.startswith("eval/")]),
    }


def plot_stage(rows: list[dict[str, Any]], stage: str, plot_dir: Path) -> dict[str, dict]:
    """Draw the stage's plots; return ``{file name: {series: points}}`` for the drawn ones."""
    wanted = wanted_plots(rows, stage)
    xlabel = "round" if stage == "rlhf" else "optimizer step"
    plot_dir.mkdir(parents=True, exist_ok=True)
    drawn = {}
    for name, (ylabel, keys) in wanted.items():
        series = {key: points for key in keys if (points := metric_series(rows, stage, key))}
        if series:
            _plot(series, f"{stage}: {ylabel}", ylabel, xlabel, plot_dir / name)
            drawn[name] = series
    return drawn


def write_report(
    output_dir: str | Path, metrics_path: str | Path, title: str, summary: list[str]
) -> Path:
    """Write ``<output_dir>/report.md`` and ``<output_dir>/plots/*.png``; return the report path."""
    output_dir = Path(output_dir)
    rows = read_metrics(metrics_path)
    lines = [f"# {title}", "", *[f"- {line}" for line in summary], ""]
    for stage in dict.fromkeys(row["stage"] for row in rows):
        drawn = plot_stage(rows, stage, output_dir / "plots")
        lines += [f"## {stage}", "", "| series | first (step) | last (step) |", "|---|---|---|"]
        for series in drawn.values():
            for key, points in series.items():
                (first_step, first), (last_step, last) = points[0], points[-1]
                lines.append(f"| {key} | {first:.4g} ({first_step}) | {last:.4g} ({last_step}) |")
        lines.append("")
        lines += [f"![{name}](plots/{name})" for name in drawn]
        lines.append("")
    lines += ledger_section(output_dir)
    path = output_dir / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def ledger_section(output_dir: Path) -> list[str]:
    """The report's lines on the RL ledger (none without one): where it is, its reward-hacking
    warnings, and the per-part correlation plot (``plots/rlhf_part_correlation.png``)."""
    from ray_adlf.ledger import analysis, plots
    from ray_adlf.ledger.store import LEDGER_DIR, ledger_files, read_ledger
    from ray_adlf.ledger.terminal import warning_lines

    if not (output_dir / LEDGER_DIR).is_dir() or not ledger_files(output_dir / LEDGER_DIR):
        return []
    data = analysis.columns(read_ledger(output_dir / LEDGER_DIR))
    rounds = sorted(set(analysis.round_index(data).tolist()))
    name = "rlhf_part_correlation.png"
    (output_dir / "plots").mkdir(parents=True, exist_ok=True)
    (output_dir / "plots" / name).write_bytes(plots.part_correlation(data))
    return [
        "## rlhf samples",
        "",
        f"The samples of {len(rounds)} recorded rounds ({rounds[0]}-{rounds[-1]}), "
        f"{len(data['reward'])} rows, are in the ledger [`{LEDGER_DIR}/`]({LEDGER_DIR}/) "
        f"(Parquet, a file per round); `ray-adlf inspect {output_dir}` reads it "
        "(`--html PAGE.html` for a page with a sortable table).",
        "",
        *[f"- {line}\n" for line in warning_lines(data, str(output_dir))],
        f"![{name}](plots/{name})",
        "",
    ]
