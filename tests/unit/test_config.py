import argparse
import re

import pytest

from ray_adlf.config import (
    Config,
    ConfigError,
    add_config_flags,
    config_from_args,
    load_yaml,
    save_yaml,
    to_dict,
)

SEED_FLAGS = [
    "--data_path",
    "--model_name",
    "--run_sft",
    "--run_rlhf",
    "--output_dir",
    "--sft_epochs",
    "--sft_batch_size",
    "--sft_learning_rate",
    "--gradient_accumulation_steps",
    "--scheduler",
    "--cosine_cycles",
    "--ppo_epochs",
    "--ppo_batch_size",
    "--adlf_alpha",
    "--use_coherence_reward",
    "--use_length_penalty",
    "--max_seq_length",
    "--fp16",
    "--use_wandb",
    "--wandb_project",
    "--use_curriculum",
    "--use_multi_objective",
    "--fluency_weight",
    "--faithfulness_weight",
    "--quality_weight",
    "--use_contrastive",
    "--contrastive_temp",
    "--use_dynamic_kl",
    "--kl_target",
    "--token_format",
    "--use_self_critique",
    "--critique_weight",
    "--use_decision_transformer",
]


def parse(argv: list[str]) -> Config:
    parser = argparse.ArgumentParser()
    add_config_flags(parser)
    return config_from_args(parser.parse_args(argv))


def test_every_seed_flag_is_accepted():
    parser = argparse.ArgumentParser()
    add_config_flags(parser)
    known = {opt for action in parser._actions for opt in action.option_strings}
    assert set(SEED_FLAGS) <= known


def test_flags_set_nested_fields_with_types():
    cfg = parse(
        [
            "--data_path",
            "d.jsonl",
            "--model_name",
            "m",
            "--run_sft",
            "--sft_epochs",
            "2",
            "--sft_learning_rate",
            "1e-4",
            "--scheduler",
            "cosine_with_restarts",
            "--cosine_cycles",
            "3",
            "--adlf_alpha",
            "0.3",
            "--fp16",
            "--use_gpu",
            "--token_format",
            "role_markers",
            "--no-use_fluency_reward",
        ]
    )
    assert cfg.data.data_path == "d.jsonl" and cfg.model.model_name == "m"
    assert cfg.sft.run_sft is True and cfg.sft.sft_epochs == 2
    assert cfg.sft.sft_learning_rate == pytest.approx(1e-4)
    assert cfg.sft.scheduler == "cosine_with_restarts" and cfg.sft.cosine_cycles == 3
    assert cfg.rewards.adlf_alpha == pytest.approx(0.3) and cfg.run.fp16 is True
    assert cfg.data.token_format == "role_markers"
    assert cfg.rewards.use_fluency_reward is False


def test_unset_flags_keep_defaults():
    assert to_dict(parse([])) == to_dict(Config())


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--adlf_alpha", "1.5"], "--adlf_alpha: must be in [0, 1]"),
        (["--sft_epochs", "two"], "--sft_epochs: 'two' is not a valid int"),
        (["--sft_epochs", "0"], "--sft_epochs: must be >= 1"),
        (["--sft_learning_rate", "nan"], "--sft_learning_rate: must be a finite number, got nan"),
        (["--sft_learning_rate", "inf"], "--sft_learning_rate: must be a finite number, got inf"),
        (["--advantage", "grpo"], "--num_samples_per_prompt: --advantage grpo needs >= 2"),
        (["--fp16", "--bf16"], "--fp16: choose one of --fp16 and --bf16"),
        (["--critic_engine", "http"], "--critic_url: needed by --critic_engine http"),
    ],
)
def test_bad_values_name_the_flag(argv, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse(argv)


def test_unknown_flag_and_bad_choice_exit_with_usage(capsys):
    with pytest.raises(SystemExit) as unknown:
        parse(["--not_a_flag", "1"])
    assert unknown.value.code == 2
    assert "unrecognized arguments: --not_a_flag" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse(["--scheduler", "exponential"])
    assert "invalid choice: 'exponential'" in capsys.readouterr().err


def test_yaml_round_trip_and_cli_overrides_yaml(tmp_path):
    cfg = parse(["--adlf_alpha", "0.25", "--use_curriculum", "--kl_target", "3"])
    path = tmp_path / "c.yaml"
    save_yaml(cfg, path)
    assert to_dict(load_yaml(path)) == to_dict(cfg)
    again = parse(["--config", str(path), "--adlf_alpha", "0.75"])
    assert again.rewards.adlf_alpha == pytest.approx(0.75)
    assert again.data.use_curriculum is True and again.ppo.kl_target == pytest.approx(3.0)


def test_yaml_unknown_key_and_bad_value_name_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("sft:\n  sft_epochz: 2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown key sft.sft_epochz"):
        load_yaml(path)
    path.write_text("rewards:\n  adlf_alpha: high\n")
    with pytest.raises(ConfigError, match="--adlf_alpha: 'high' is not a valid float"):
        load_yaml(path)
    path.write_text("data: [1, 2]\n")
    with pytest.raises(ConfigError, match="section 'data' must be a mapping"):
        load_yaml(path)


GROUP = ["--advantage", "grpo", "--num_samples_per_prompt", "2"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--no-group_std_normalize"], "--group_std_normalize: only --advantage grpo divides"),
        (["--dual_clip", "1.0"], "--dual_clip: must be 0 (off) or > 1"),
        (
            [*GROUP, "--policy_loss", "gspo", "--dual_clip", "3"],
            "--dual_clip: bounds the token-ratio loss",
        ),
        ([*GROUP, "--policy_loss", "gspo"], "--clip_eps: --policy_loss gspo clips a sequence"),
        (["--dynamic_sampling"], "--dynamic_sampling: drops groups whose rewards are all equal"),
        (
            ["--overlong_buffer", "40", "--max_new_tokens", "32"],
            "--overlong_buffer: must be <= --max_new_tokens (32)",
        ),
        (
            ["--async_rollout", "--use_lora", "--init_kl_coef", "0.1"],
            "--async_rollout: with --use_lora the colocated reference",
        ),
        (["--max_staleness", "0"], "--max_staleness: must be >= 1, got 0"),
        (["--tis_cap", "0.5"], "--tis_cap: must be 0 (off) or >= 1"),
    ],
)
def test_algorithm_flags_that_do_not_fit_together_name_the_flag(argv, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse(argv)


def test_an_unknown_loss_aggregation_lists_the_modes(capsys):
    with pytest.raises(SystemExit):
        parse(["--loss_agg", "seq_sum"])
    error = capsys.readouterr().err
    assert "--loss_agg: invalid choice: 'seq_sum'" in error
    assert "seq_mean_token_sum_norm" in error


def test_the_variants_parse_together():
    cfg = parse(
        [
            *GROUP,
            "--async_rollout",
            "--max_staleness",
            "2",
            "--clip_eps_high",
            "0.28",
            "--dynamic_sampling",
            "--overlong_buffer",
            "4",
            "--loss_agg",
            "seq_mean_token_sum_norm",
            "--no-group_std_normalize",
            "--tis_cap",
            "3",
        ]
    )
    ppo = cfg.ppo
    assert (ppo.async_rollout, ppo.max_staleness, ppo.clip_eps_high) == (True, 2, 0.28)
    assert (ppo.dynamic_sampling, ppo.overlong_buffer, ppo.loss_agg) == (
        True,
        4,
        "seq_mean_token_sum_norm",
    )
    assert (ppo.group_std_normalize, ppo.tis_cap) == (False, 3.0)
