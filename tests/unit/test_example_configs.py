"""The example configs in jobs/configs/ stay valid against the config schema."""

from pathlib import Path

import pytest

from ray_adlf.config import load_yaml, validate

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "jobs" / "configs").glob("*.yaml"))


def test_the_three_examples_exist():
    assert {p.name for p in CONFIGS} >= {"tiny_cpu.yaml", "gpu_1b.yaml", "multinode_7b.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_example_config_loads_and_validates(path):
    cfg = validate(load_yaml(path))
    assert cfg.sft.run_sft and cfg.ppo.run_rlhf
