"""cluster.yaml is checked with Ray's own cluster-config schema."""

import copy
from pathlib import Path

import pytest
import yaml
from jsonschema import ValidationError
from ray.autoscaler._private.commands import prepare_config
from ray.autoscaler._private.util import validate_config

CLUSTER_YAML = Path(__file__).resolve().parents[2] / "cluster.yaml"


@pytest.fixture
def cluster() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def test_cluster_yaml_passes_rays_schema(cluster):
    validate_config(prepare_config(copy.deepcopy(cluster)))
    assert {"head", "cpu_worker", "gpu_worker"} == set(cluster["available_node_types"])
    assert any("scripts/install.sh" in cmd for cmd in cluster["setup_commands"])


def test_the_validator_rejects_a_broken_copy(cluster):
    cluster["available_node_types"]["head"]["not_a_field"] = 1
    with pytest.raises(ValidationError, match="not_a_field"):
        validate_config(prepare_config(cluster))
