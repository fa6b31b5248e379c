"""``ray-adlf inspect --html PAGE.html``: one static page, nothing fetched from anywhere.

The page holds the terminal report (``terminal.inspect_lines``) with its warnings on top, the
plots (``plots``, PNG inlined as data URLs) and a table of the samples (every row up to
``MAX_TABLE_ROWS``, else those of the inspected round) that sorts by a column when its header
is clicked (again: the other way). Opened with ``#sort=PART`` (``#sort=PART:asc``) the
table starts sorted so. Each plot's ``<img>`` gets ``data-rendered="true"`` once the browser has
decoded it, so a headless browser's DOM tells whether the plots showed.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

import numpy as np

from ray_adlf.ledger import analysis, plots
from ray_adlf.ledger.terminal import inspect_lines

MAX_TABLE_ROWS = 2000
CELL_CHARS = 300

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 12px; }
.warning { background: #fff3cd; border: 1px solid #e0b000; padding: 0.6em; margin: 0.4em 0; }
.plots img { max-width: 48%; margin: 0.3em; border: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 12px; }
th, td { border: 1px solid #ccc; padding: 2px 5px; vertical-align: top; }
th { background: #eee; cursor: pointer; position: sticky; top: 0; }
td.text { max-width: 28em; white-space: pre-wrap; }
"""

SCRIPT = """
function sortTable(column, ascending) {
  const table = document.getElementById("samples");
  const headers = Array.from(table.tHead.rows[0].cells);
  const index = headers.findIndex(th => th.dataset.column === column || th.textContent === column);
  if (index < 0) return;
  const numeric = headers[index].dataset.numeric === "true";
  const body = table.tBodies[0];
  const key = row => {
    const text = row.cells[index].dataset.value;
    return numeric ? (text === "" ? NaN : parseFloat(text)) : text;
  };
  const rows = Array.from(body.rows);
  rows.sort((a, b) => {
    const x = key(a), y = key(b);
    if (numeric) {
      if (isNaN(x) || isNaN(y)) return isNaN(x) - isNaN(y);
      return ascending ? x - y : y - x;
    }
    return ascending ? x.localeCompare(y) : y.localeCompare(x);
  });
  rows.forEach(row => body.appendChild(row));
  headers.forEach(th => th.removeAttribute("aria-sort"));
  headers[index].setAttribute("aria-sort", ascending ? "ascending" : "descending");
}
document.querySelectorAll("#samples th").forEach(th => th.addEventListener("click", () => {
  sortTable(th.dataset.column, th.getAttribute("aria-sort") === "descending");
}));
const wanted = new URLSearchParams(location.hash.slice(1)).get("sort");
if (wanted) {
  const [column, direction] = wanted.split(":");
  sortTable(column, direction === "asc");
}
document.querySelectorAll(".plots img").forEach(img => img.decode().then(() => {
  if (img.naturalWidth > 0) img.dataset.rendered = "true";
}));
"""


def image(name: str, png: bytes) -> str:
    data = base64.b64encode(png).decode()
    return f'<img id="plot-{name}" alt="{name}" src="data:image/png;base64,{data}">'


def table_columns(data: dict[str, np.ndarray]) -> list[str]:
    """The table's columns: where the sample is, the parts shown, the texts."""
    parts = [analysis.column_name(data, p) for p in analysis.shown_parts(data)]
    critics = [f"critic{k}_score" for k in range(len(analysis.critic_scores(data)))]
    fixed = ["round", "sample", "prompt_id", "response_tokens", "finish_reason"]
    return [*fixed, *parts, *critics, "prompt", "response"]


def cell(data: dict[str, np.ndarray], column: str, row: int) -> str:
    value = data[column][row]
    if data[column].dtype == float:
        shown = "" if np.isnan(value) else f"{value:.4g}"
        return f'<td data-value="{shown}">{shown}</td>'
    text = "" if value is None else str(value)
    shown = html.escape(text if len(text) <= CELL_CHARS else text[: CELL_CHARS - 1] + "…")
    return f'<td class="text" data-value="{html.escape(text)}">{shown}</td>'


def sample_table(data: dict[str, np.ndarray], rows: np.ndarray) -> str:
    names = table_columns(data)
    header = "".join(
        f'<th data-column="{name}" data-numeric="{str(data[name].dtype == float).lower()}">'
        f"{html.escape(name.removeprefix(analysis.PART))}</th>"
        for name in names
    )
    body = "\n".join("<tr>" + "".join(cell(data, n, row) for n in names) + "</tr>" for row in rows)
    return f'<table id="samples"><thead><tr>{header}</tr></thead><tbody>\n{body}\n</tbody></table>'


def write_page(
    data: dict[str, np.ndarray], source: str, path: Path, sort: str, top: int, in_round: int | None
) -> Path:
    """Write the page (module docstring) to ``path``; returns it."""
    lines = inspect_lines(data, source, sort, top, in_round)
    rounds = analysis.round_index(data)
    shown_round = int(rounds.max()) if in_round is None else in_round
    figures = {
        "part-means": plots.part_means(data),
        "part-correlation": plots.part_correlation(data),
        "distributions": plots.distributions(data, shown_round),
    }
    if analysis.PART + "debate_agreement" in data:
        figures["critic-agreement"] = plots.critic_agreement(data)
    rows = np.arange(len(rounds))
    note = f"all {len(rows)} samples"
    if len(rows) > MAX_TABLE_ROWS:
        rows = rows[rounds == shown_round]
        note = f"the {len(rows)} samples of round {shown_round} (of {len(rounds)})"
    warnings = [line for line in lines if line.startswith("warning:")]
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>ray-adlf inspect {html.escape(source)}</title>
<style>{STYLE}</style></head>
<body>
<h1>Ledger {html.escape(source)}</h1>
{"".join(f'<div class="warning">{html.escape(w)}</div>' for w in warnings)}
<h2>Plots</h2>
<div class="plots">{"".join(image(name, png) for name, png in figures.items())}</div>
<h2>Report</h2>
<pre>{html.escape(chr(10).join(lines))}</pre>
<h2>Samples</h2>
<p>{note}; click a column's name to sort by it.</p>
{sample_table(data, rows)}
<script>{SCRIPT}</script>
</body></html>
"""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
