"""Each command's ``--help`` lists the flags that act on it, not every SFT flag."""

import pytest

from ray_adlf.cli import build_parser


def help_text(capsys, *argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([*argv, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def test_train_help_lists_every_stage_flag(capsys):
    text = help_text(capsys, "train")
    for flag in ("--sft_learning_rate", "--warmup_ratio", "--adlf_alpha", "--ppo_epochs"):
        assert flag in text


def test_score_help_lists_reward_flags_only(capsys):
    text = help_text(capsys, "score")
    for flag in ("--output", "--adlf_alpha", "--reward_model_path", "--critic_url"):
        assert flag in text
    for flag in ("--sft_learning_rate", "--warmup_ratio", "--ppo_epochs", "--rl_rounds"):
        assert flag not in text


def test_tune_help_lists_search_and_rl_flags_but_no_sft_schedule(capsys):
    text = help_text(capsys, "tune")
    for flag in ("--space", "--num_samples", "--scheduler", "--adlf_alpha", "--kl_target"):
        assert flag in text
    for flag in ("--warmup_ratio", "--cosine_cycles", "--use_contrastive", "--resume"):
        assert flag not in text


@pytest.mark.parametrize("command", ["validate", "stats", "format"])
def test_data_help_lists_reading_flags_only(capsys, command):
    text = help_text(capsys, "data", command)
    assert "--max-line-bytes" in text and "--lenient" in text
    assert "--sft_learning_rate" not in text and "--adlf_alpha" not in text
