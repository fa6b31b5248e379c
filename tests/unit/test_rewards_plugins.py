import time

import numpy as np
import pytest
from stub_server import json_answer, serve

from ray_adlf.config import RewardConfig
from ray_adlf.data.records import Turn
from ray_adlf.rewards.plugins import HTTPRewardClient, RewardPluginError, call_plugin, load_plugin
from ray_adlf.rewards.scorer import RewardScorer

CONTEXTS = [(Turn("user", "What is 2 plus 2?"),), (Turn("system", "Be brief."), Turn("user", "Hi"))]
RESPONSES = ["4.", "Hello there, how can I help?"]

PLUGIN = """
def length_reward(contexts, responses):
    assert contexts[1][0] == {"role": "system", "content": "Be brief."}
    return [min(len(r) / 10, 1.0) for r in responses]

def wrong_length(contexts, responses):
    return [0.5]

def broken(contexts, responses):
    raise KeyError("oops")

def not_numbers(contexts, responses):
    return ["high"] * len(responses)

def huge_ints(contexts, responses):
    return [10**400, 10**5000]

def deep_lists(contexts, responses):
    deep = []
    for _ in range(100_000):
        deep = [deep]
    return [0.5, deep]

def scalar_array(contexts, responses):
    import numpy
    return numpy.array(0.5)

def array_rewards(contexts, responses):
    import numpy
    return numpy.array([0.25, 0.75])

NOT_A_FUNCTION = 3
"""


@pytest.fixture
def plugin_file(tmp_path):
    path = tmp_path / "my_rewards.py"
    path.write_text(PLUGIN)
    return path


def test_file_plugin_is_loaded_and_called_on_batches(plugin_file):
    function = load_plugin(f"{plugin_file}:length_reward")
    assert call_plugin(function, CONTEXTS, RESPONSES) == pytest.approx([0.2, 1.0])


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("wrong_length", "expected 2 rewards, got 1"),
        ("broken", "KeyError: 'oops'"),
        ("not_numbers", "reward 0 is not a number"),
        ("huge_ints", "reward 0 is an integer too large for a float"),
        ("deep_lists", r"reward 1 is not a number: \[\[\[\[\[\[\[\.\.\.\]"),
        ("scalar_array", r"expected a list of 2 numbers, got array\(0\.5\)"),
    ],
)
def test_file_plugin_failures_are_clear(plugin_file, name, message):
    with pytest.raises(RewardPluginError, match=message):
        call_plugin(load_plugin(f"{plugin_file}:{name}"), CONTEXTS, RESPONSES)


def test_a_file_plugin_may_return_a_1d_array(plugin_file):
    rewards = call_plugin(load_plugin(f"{plugin_file}:array_rewards"), CONTEXTS, RESPONSES)
    assert rewards.tolist() == [0.25, 0.75]


def test_bad_plugin_specs(plugin_file, tmp_path):
    with pytest.raises(RewardPluginError, match="no function 'missing'"):
        load_plugin(f"{plugin_file}:missing")
    with pytest.raises(RewardPluginError, match="no function 'NOT_A_FUNCTION'"):
        load_plugin(f"{plugin_file}:NOT_A_FUNCTION")
    with pytest.raises(RewardPluginError, match="no file"):
        load_plugin(f"{tmp_path}/nope.py:f")
    with pytest.raises(RewardPluginError, match="expected path/to/file.py:function"):
        load_plugin(str(plugin_file))


def test_http_endpoint_protocol():
    def handler(path, body):
        assert path == "/reward"
        return json_answer({"rewards": [len(r) / 100 for r in body["responses"]]})

    with serve(handler) as (url, requests):
        client = HTTPRewardClient(f"{url}/reward", timeout=5, retries=0)
        assert client(CONTEXTS, RESPONSES) == pytest.approx([0.02, 0.28])
    (request,) = requests
    body = request.body
    assert body == {
        "contexts": [
            [{"role": "user", "content": "What is 2 plus 2?"}],
            [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        ],
        "responses": RESPONSES,
    }


def test_http_retries_a_server_error_then_succeeds():
    answers = iter([json_answer({"error": "busy"}, status=503), json_answer({"rewards": [1, 0]})])
    with serve(lambda path, body: next(answers)) as (url, requests):
        client = HTTPRewardClient(url, timeout=5, retries=2, backoff=0.01)
        assert client(CONTEXTS, RESPONSES) == pytest.approx([1.0, 0.0])
    assert len(requests) == 2


def test_http_timeout_is_retried_then_a_clear_error():
    with serve(lambda path, body: json_answer({"rewards": [0, 0]}, delay=1.0)) as (url, requests):
        client = HTTPRewardClient(url, timeout=0.2, retries=1, backoff=0.01)
        started = time.perf_counter()
        with pytest.raises(RewardPluginError, match=r"no answer within 0.2 s \(after 2 attempts\)"):
            client(CONTEXTS, RESPONSES)
        assert time.perf_counter() - started < 1.5
        time.sleep(0.1)
    assert len(requests) == 2


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ((200, b"<html>oops</html>", 0.0), "the answer is not JSON: '<html>oops</html>'"),
        (json_answer({"score": [1, 2]}), 'expected {"rewards": \\[...\\]}'),
        (json_answer({"rewards": [0.5]}), "expected 2 rewards, got 1"),
        (json_answer({"rewards": [0.5, None]}), "reward 1 is not a number"),
        (json_answer({"detail": "bad"}, status=422), "HTTP 422"),
        ((200, b"[" * 100_000 + b"]" * 100_000, 0.0), "the answer is JSON nested too deeply"),
        ((200, b'{"rewards": [' + b"9" * 10**6 + b", 1]}", 0.0), "integer string conversion"),
        ((200, b'{"rewards": [' + b"9" * 400 + b", 1]}", 0.0), "reward 0 is an integer too large"),
        ((200, b'{"rewards": [1e999, NaN]}', 0.0), "reward 0 is not finite: inf"),
        (json_answer({"rewards": 0.5}), "expected a list of 2 numbers, got 0.5"),
    ],
)
def test_http_bad_answers_are_clear_errors_without_retry(answer, message):
    with (
        serve(lambda path, body: answer) as (url, requests),
        pytest.raises(RewardPluginError, match=message),
    ):
        client = HTTPRewardClient(url, timeout=5, retries=3, backoff=0.01, max_response_bytes=2**21)
        client(CONTEXTS, RESPONSES)
    assert len(requests) == 1


def test_http_answers_over_the_size_cap_fail():
    with (
        serve(lambda path, body: json_answer({"rewards": [0.5] * 100})) as (url, _),
        pytest.raises(RewardPluginError, match="larger than max_response_bytes = 100"),
    ):
        HTTPRewardClient(url, timeout=5, retries=0, max_response_bytes=100)(CONTEXTS, RESPONSES)


@pytest.mark.parametrize("url", ["ftp://example.com/reward", "example.com:80/reward"])
def test_non_http_reward_urls_are_refused_at_construction(url):
    with pytest.raises(
        RewardPluginError, match="--reward_url .*must start with http:// or https://"
    ):
        HTTPRewardClient(url, timeout=5, retries=0)


def test_unreachable_endpoint():
    with serve(lambda path, body: json_answer({})) as (url, _):
        dead = url
    with pytest.raises(RewardPluginError, match="after 2 attempts"):
        HTTPRewardClient(dead, timeout=1, retries=1, backoff=0.01)(CONTEXTS, RESPONSES)


def scorer_config(**overrides) -> RewardConfig:
    cfg = RewardConfig(use_fluency_reward=False, reward_url_retries=0, reward_url_timeout=5)
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


def test_scorer_raises_or_counts_a_fallback_as_configured(plugin_file):
    with serve(lambda path, body: (200, b"not json", 0.0)) as (url, _):
        raising = RewardScorer(scorer_config(reward_url=url), "tiny", None, "standard", 256)
        with pytest.raises(RewardPluginError, match="not JSON"):
            raising.score(CONTEXTS, RESPONSES)
        fallback = RewardScorer(
            scorer_config(
                reward_url=url,
                reward_plugin=f"{plugin_file}:length_reward",
                on_reward_error="fallback",
                reward_fallback_value=0.25,
            ),
            "tiny",
            None,
            "standard",
            256,
        )
        parts = fallback.score(CONTEXTS, RESPONSES)
    assert parts["http"] == pytest.approx([0.25, 0.25])
    assert parts["http_failed"].tolist() == [1.0, 1.0]
    assert parts["plugin"] == pytest.approx([0.2, 1.0])
    assert parts["plugin_failed"].tolist() == [0.0, 0.0]
    assert isinstance(parts["http"], np.ndarray)


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"rewards": [' + b"9" * 10**6 + b", 1]}",
        b'{"rewards": [' + b"9" * 400 + b", 1]}",
    ],
)
def test_the_fallback_policy_covers_malformed_answers(body):
    with serve(lambda path, _: (200, body, 0.0)) as (url, _):
        cfg = scorer_config(reward_url=url, on_reward_error="fallback", reward_fallback_value=0.25)
        parts = RewardScorer(cfg, "tiny", None, "standard", 256).score(CONTEXTS, RESPONSES)
    assert parts["http"].tolist() == [0.25, 0.25] and parts["http_failed"].tolist() == [1.0, 1.0]
