"""``ray-adlf data ...`` end to end through the console script's ``main``."""

import json
import subprocess
import sys

import pytest

from ray_adlf.cli import main
from ray_adlf.data.sample import generate_sample, sample_path

GOOD = {
    "conversation": [{"role": "user", "content": "Hi"}, {"role": "gpt", "content": "Hello"}],
    "meta_eval_score": 4,
}


def write(tmp_path, lines, name="d.jsonl"):
    path = tmp_path / name
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_validate_bundled_sample_exits_zero_and_prints_rate(capsys):
    assert main(["data", "validate", "sample"]) == 0
    out = capsys.readouterr().out
    assert "sample: 400 valid rows of 400" in out and "rows/s" in out


def test_bundled_sample_is_the_generator_output():
    rows = [json.loads(line) for line in sample_path().read_text().splitlines()]
    assert rows == list(generate_sample(400, seed=0))


def test_strict_stops_at_first_bad_row_with_path_line_reason(tmp_path, capsys):
    path = write(tmp_path, [json.dumps(GOOD), "{oops", json.dumps({**GOOD, "meta_eval_score": 9})])
    assert main(["data", "validate", str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"{path}:2: not JSON")


def test_console_script_exit_code_and_stderr(tmp_path):
    path = write(tmp_path, [json.dumps({**GOOD, "meta_eval_score": 9})])
    run = subprocess.run(
        [sys.executable, "-m", "ray_adlf.cli", "data", "validate", str(path)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1
    assert run.stderr.strip() == f"{path}:1: score out of range: 9 not in [0, 5]"


def test_lenient_skips_within_budget_and_summarises(tmp_path):
    lines = [json.dumps(GOOD)] * 97 + ["[1]", "{oops", "[2]"]
    path = write(tmp_path, lines)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "ray_adlf.cli",
            "data",
            "validate",
            str(path),
            "--lenient",
            "--max-bad-fraction",
            "0.05",
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert "97 valid rows of 100 (3 skipped)" in run.stdout
    assert "not an object: 2 rows (lines 98, 100)" in run.stderr
    assert "not JSON: 1 row (line 99)" in run.stderr


def test_lenient_fails_over_budget(tmp_path, capsys):
    path = write(tmp_path, [json.dumps(GOOD)] * 98 + ["[1]", "[2]"])
    assert main(["data", "validate", str(path), "--lenient"]) == 1  # 2% > default 1%
    err = capsys.readouterr().err
    assert "too many bad rows: 2 of 100 rows bad" in err and "lines 99, 100" in err


def test_bad_budget_flag_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "validate", "sample", "--lenient", "--max-bad-fraction", "2"])
    assert exit_info.value.code == 2
    assert "2 is not in [0, 1]" in capsys.readouterr().err


def test_stats_prints_rows_histogram_percentiles_reasons(tmp_path, capsys):
    rows = [
        GOOD,
        {**GOOD, "meta_eval_score": 0.5, "score_reason": "bad"},
        {**GOOD, "meta_eval_score": 5},
    ]
    path = write(tmp_path, [json.dumps(r) for r in rows])
    assert main(["data", "stats", str(path)]) == 0
    out = capsys.readouterr().out
    assert "rows: 3" in out
    assert "turns: 6 (2.00 per row, max 2; assistant 3, user 3)" in out
    assert "rows with score_reason: 1 (33.3%)" in out
    assert "[0,1)        1" in out and "[4,5]        2" in out
    assert "tokens per conversation: p50 " in out and "p100" in out


def test_format_prints_rendering_with_label_marks(capsys):
    assert main(["data", "format", "sample", "--token-format", "role_markers", "--limit", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("--- ") == 2
    assert "<user>What colour is coal?</user><assistant>[[Coal is yellow.</assistant>]]" in out


def test_stats_on_generated_file_with_real_percentiles(tmp_path, capsys):
    path = write(tmp_path, [json.dumps(r) for r in generate_sample(50, seed=3)])
    assert main(["data", "stats", str(path), "--token-format", "turn_markers"]) == 0
    assert "rows: 50" in capsys.readouterr().out
