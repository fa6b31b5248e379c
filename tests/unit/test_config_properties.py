"""Property tests: whatever the bytes, YAML or JSON in a config file, loading and checking it
gives a Config or our own ``ConfigError`` (one line, naming the file), never another exception.
Deterministic (``derandomize``, no example database) and small enough for the unit suite."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from ray_adlf.config import Config, ConfigError, leaf_fields, load_yaml, to_dict, validate

PROPERTY = settings(max_examples=150, derandomize=True, deadline=None, database=None)
LEAVES = leaf_fields()
SECTIONS = sorted(to_dict(Config()))

SCALAR = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**300, max_value=10**310)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["inf", "-inf", ".nan", "1e999", "0x10", "~", "yes", "http://u:p@h/"])
)
VALUE = st.recursive(
    SCALAR,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
KEY = st.sampled_from(sorted(LEAVES)) | st.text(max_size=8)
SECTION = st.sampled_from(SECTIONS) | st.text(max_size=8)
DOCUMENT = (
    st.dictionaries(SECTION, st.dictionaries(KEY, VALUE, max_size=4) | VALUE, max_size=4) | VALUE
)
PIECES = [
    b"run:\n",
    b"  seed: 3\n",
    b"ppo:\n  ppo_learning_rate: ",
    b"&a [*a]\n",
    b"!!python/object:os.system\n",
    b"[[[[",
    b"{",
    b"\xff\xfe",
    b"\t",
    b": :",
    b"\x00",
]


def load_and_check(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "config.yaml"
        path.write_bytes(data)
        try:
            validate(load_yaml(path))
        except ConfigError as err:
            message = str(err)
            assert message.startswith(str(path)) or message.startswith("--"), message
            assert "\n" not in message, message


@PROPERTY
@given(st.binary(max_size=200) | st.lists(st.sampled_from(PIECES), max_size=8).map(b"".join))
def test_arbitrary_bytes_give_a_config_or_a_config_error(data):
    load_and_check(data)


@PROPERTY
@given(DOCUMENT)
def test_arbitrary_yaml_gives_a_config_or_a_config_error(document):
    load_and_check(yaml.safe_dump(document, allow_unicode=True).encode("utf-8", "surrogatepass"))


@PROPERTY
@given(DOCUMENT)
def test_arbitrary_json_gives_a_config_or_a_config_error(document):
    load_and_check(json.dumps(document).encode())
