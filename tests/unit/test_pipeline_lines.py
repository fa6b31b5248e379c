"""The run report's and the demo's closing lines about what RLHF changed."""

from ray_adlf.train.pipeline import evaluation_lines, report_lines

RLHF = {
    "complete": True,
    "step": 20,
    "max_steps": 20,
    "checkpoint": "ckpt",
    "eval/baseline_score": 2.937,
    "eval/baseline_score_se": 0.131,
    "eval/score": 3.2,
    "eval/score_se": 0.1,
    "eval/kl": 1.5,
    "eval/kl_se": 0.2,
    "eval/gain": 0.263,
    "eval/gain_se": 0.12,
}


def test_a_gain_over_two_standard_errors_is_called_better():
    lines = evaluation_lines(RLHF)
    assert lines[1] == "  before RLHF  2.937 +- 0.131"
    assert lines[2].startswith("  after RLHF   3.200 +- 0.100")
    assert lines[3] == "  change +0.263 +- 0.120 (paired over prompts): RLHF is better"


def test_a_gain_within_two_standard_errors_is_not():
    lines = evaluation_lines({**RLHF, "eval/gain": 0.239})  # 0.239 < 2 x 0.12
    assert lines[3].endswith("RLHF is not better by 2 standard errors")


def test_the_report_carries_the_evaluation_and_runs_without_one_have_none():
    assert report_lines({"rlhf": RLHF})[-1].startswith("- change +0.263")
    assert evaluation_lines({k: v for k, v in RLHF.items() if k != "eval/gain"}) == []
