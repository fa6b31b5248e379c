"""A metrics file with a torn last line (a writer killed mid-line) stays usable."""

import json
import logging

from ray_adlf.tracking import MetricsFile, read_metrics


def torn_file(tmp_path):
    path = tmp_path / "metrics.jsonl"
    rows = [{"stage": "rlhf", "step": s, "reward": s / 10} for s in (1, 2, 3)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"stage": "rlhf", "st')
    return path


def test_a_torn_line_is_skipped_with_a_warning_naming_it(tmp_path, caplog):
    path = torn_file(tmp_path)
    with caplog.at_level(logging.WARNING, logger="ray_adlf.tracking"):
        rows = read_metrics(path)
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert f"{path}:4: not a metrics row" in caplog.text


def test_resume_rewrites_the_file_whole_and_appends_on_a_fresh_line(tmp_path):
    path = torn_file(tmp_path)
    metrics = MetricsFile(path, "rlhf")
    metrics.truncate_after(2)
    metrics.append({"reward": 0.9}, step=3)
    lines = path.read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3]
    assert json.loads(lines[-1])["reward"] == 0.9


def test_an_append_after_a_torn_line_starts_a_new_line(tmp_path):
    path = torn_file(tmp_path)
    MetricsFile(path, "rlhf").append({"reward": 0.5}, step=4)
    assert [r["step"] for r in read_metrics(path)] == [1, 2, 3, 4]
