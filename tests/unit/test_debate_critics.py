import math

import pytest
from stub_server import json_answer, serve

from ray_adlf.data.records import Turn
from ray_adlf.debate.critics import (
    Critic,
    CriticBackendError,
    CriticSpec,
    HFCriticBackend,
    HTTPCriticBackend,
    completions_url,
    make_backend,
    make_critic,
    masses_from_top_logprobs,
    ordered_choices,
)
from ray_adlf.debate.protocol import JudgeRequest, run_debate

CONTEXTS = [
    (Turn("user", "What is the capital of France?"),),
    (
        Turn("user", "Hi, my name is Alice."),
        Turn("assistant", "Hello Alice!"),
        Turn("user", "What is my name?"),
    ),
]
RESPONSES = ["The capital of France is Paris.", "Your name is Bruno."]


@pytest.fixture(scope="module")
def tiny_backend():
    return HFCriticBackend("tiny")


def local_judge(critics):
    return lambda requests: [c.judge(r) for c, r in zip(critics, requests)]


def http_critic(url: str, persona: int = 2) -> Critic:
    return make_critic(CriticSpec("http", "judge-model", persona, url=url, timeout=2, retries=0))


def test_three_critics_two_rounds_on_the_tiny_model(tiny_backend):
    critics = [Critic(tiny_backend, k, 16, 0.7, seed=k) for k in range(3)]
    results = run_debate(CONTEXTS, RESPONSES, 3, 2, "trimmed_mean", local_judge(critics))
    assert len(results) == 2
    for result in results:
        assert 0.0 <= result.score <= 1.0
        assert 0.0 <= result.spread <= 0.5 and result.agreement == pytest.approx(
            1 - 2 * result.spread
        )
        assert result.valid == 3 and result.parse_failures == 0
        assert [len(r) for r in result.rounds] == [3, 3]
        for verdicts in result.rounds:
            assert all(v.source == "probs" and 0.0 <= v.score <= 5.0 for v in verdicts)


def test_score_masses_are_next_token_probabilities(tiny_backend):
    # every score has a single-token spelling in the tiny tokenizer
    assert all(tiny_backend.score_token_ids)
    (masses,) = tiny_backend.score_masses(["Is this good?\nScore:"])
    assert len(masses) == 6 and 0.0 < sum(masses) < 1.0


def garbage(path, body):
    return json_answer(
        {"choices": [{"index": i, "text": "🍌 banana ???"} for i in range(len(body["prompt"]))]}
    )


def test_a_critic_answering_garbage_is_counted_not_fatal(tiny_backend):
    with serve(garbage) as (url, requests):
        critics = [
            Critic(tiny_backend, 0, 16, 0.7, 0),
            Critic(tiny_backend, 1, 16, 0.7, 1),
            http_critic(url),
        ]
        results = run_debate(CONTEXTS, RESPONSES, 3, 2, "mean", local_judge(critics))
    for result in results:
        assert result.valid == 2 and result.parse_failures == 2  # the HTTP critic, both rounds
        assert 0.0 <= result.score <= 1.0
        bad = [r[2] for r in result.rounds]
        assert all(v.score is None and v.source == "failed" and "banana" in v.error for v in bad)
        assert "banana" in result.rounds[0][2].critique
    assert all(r.path == "/completions" for r in requests)


@pytest.mark.parametrize(
    "answer",
    [
        (200, b"{not json", 0.0),
        json_answer({"error": "boom"}, status=500),
        json_answer({"choices": "nope"}),
    ],
)
def test_broken_endpoints_become_failed_verdicts(answer):
    with serve(lambda path, body: answer) as (url, _):
        verdicts = http_critic(url).judge([JudgeRequest(CONTEXTS[0], RESPONSES[0], 1)])
    assert verdicts[0].score is None and verdicts[0].source == "failed" and verdicts[0].error


def openai_like(path, body):
    n = len(body["prompt"])
    if body.get("logprobs"):
        top = {" 4": math.log(0.6), " 5": math.log(0.2), "A": math.log(0.2)}
        return json_answer(
            {
                "choices": [
                    {
                        "index": i,
                        "text": " 4",
                        "logprobs": {"tokens": [" 4"], "top_logprobs": [top]},
                    }
                    for i in range(n)
                ]
            }
        )
    return json_answer(
        {"choices": [{"index": i, "text": " Correct and polite.\nMore."} for i in range(n)]}
    )


def test_http_critic_reads_the_score_from_top_logprobs():
    with serve(openai_like) as (url, requests):
        (verdict,) = http_critic(url).judge([JudgeRequest(CONTEXTS[0], RESPONSES[0], 1)])
    assert verdict.critique == "Correct and polite."
    assert verdict.source == "probs"
    assert verdict.score == pytest.approx((4 * 0.6 + 5 * 0.2) / 0.8)
    critique_request, score_request = (r.body for r in requests)
    assert critique_request["model"] == "judge-model" and critique_request["max_tokens"] == 32
    assert score_request["max_tokens"] == 1 and score_request["logprobs"] == 20
    assert score_request["prompt"][0].endswith("Critique: Correct and polite.\nScore:")


def test_http_critic_without_logprobs_falls_back_to_the_text():
    def no_logprobs(path, body):
        text = " 3/5" if body["max_tokens"] <= 4 else "Fine."
        return json_answer({"choices": [{"index": 0, "text": text}]})

    with serve(no_logprobs) as (url, _):
        backend = HTTPCriticBackend(url, "m", timeout=2, retries=0)
        (verdict,) = Critic(backend, 0, 32, 0.0, 0).judge([JudgeRequest(CONTEXTS[0], "Paris.", 1)])
    assert (verdict.source, verdict.score, verdict.critique) == ("text", 3.0, "Fine.")


def test_critic_specs_follow_the_policy_only_when_they_run_on_it():
    from ray_adlf.actors.critique import critic_specs
    from ray_adlf.config import Config

    cfg = Config()
    cfg.debate.num_critics = 2
    specs = critic_specs(cfg, "policy-dir", "reference-dir")
    assert [(s.model, s.follows_policy) for s in specs] == [("reference-dir", False)] * 2
    cfg.sft.use_self_critique = True  # one more critic: the policy judging itself
    specs = critic_specs(cfg, "policy-dir", "reference-dir")
    assert [(s.model, s.persona, s.follows_policy) for s in specs][-1] == ("policy-dir", 2, True)
    cfg.sft.use_self_critique, cfg.debate.critic_engine = False, "policy"
    assert all(s.follows_policy for s in critic_specs(cfg, "policy-dir", "reference-dir"))


@pytest.mark.parametrize(
    ("engine", "num_critics", "self_critique", "groups"),
    [
        ("reference", 3, False, [[0, 1, 2]]),  # three personas, one reference copy
        ("reference", 2, True, [[0, 1], [2]]),  # the self-critic follows the policy
        ("policy", 2, True, [[0, 1, 2]]),  # all on the policy, all synced
        ("model", 2, True, [[0, 1], [2]]),
        ("http", 2, True, [[0], [1], [2]]),  # network-bound: one actor each
    ],
)
def test_critics_on_one_model_share_one_actor(engine, num_critics, self_critique, groups):
    from ray_adlf.actors.critique import critic_groups, critic_specs
    from ray_adlf.config import Config
    from ray_adlf.cpu_plan import critic_actors

    cfg = Config()
    cfg.rewards.use_debate_reward = True
    cfg.debate.critic_engine, cfg.debate.num_critics = engine, num_critics
    cfg.debate.critic_model, cfg.debate.critic_url = "judge-dir", "http://127.0.0.1:9/v1"
    cfg.sft.use_self_critique = self_critique
    specs = critic_specs(cfg, "policy-dir", "policy-dir")  # the RL stage's reference = policy
    assert critic_groups(specs) == groups
    assert critic_actors(cfg) == len(groups)  # what the CPU plan reserves


def top(logprobs: dict) -> dict:
    return {"logprobs": {"top_logprobs": [logprobs]}}


@pytest.mark.parametrize(
    ("choice", "masses"),
    [
        (top({" 4": math.log(0.5), "4": math.log(0.25), "A": 0.0}), [0, 0, 0, 0, 0.75, 0]),
        (top({"0": -math.inf, " 5 ": 0.0005}), [0, 0, 0, 0, 0, 1.0]),  # rounding slack
        (top({"²": 0.0, "٣": 0.0, "05": 0.0, "-1": 0.0, "3": -1e400}), [0.0] * 6),  # odd tokens
        ({"text": "4"}, None),
        ({"logprobs": None}, None),
        ({"logprobs": {"top_logprobs": []}}, None),
        ({"logprobs": {"top_logprobs": "4"}}, None),
        ({"logprobs": {"top_logprobs": [[" 4"]]}}, None),
    ],
)
def test_masses_from_top_logprobs(choice, masses):
    assert masses_from_top_logprobs(choice) == (None if masses is None else pytest.approx(masses))


@pytest.mark.parametrize(
    ("logprobs", "message"),
    [
        ({" 4": 1000}, "score token ' 4' has logprob 1000"),
        ({"4": 10**400}, "score token '4' has logprob 1000000"),
        ({"4": -(10**400)}, "score token '4' has logprob -1000000"),
        ({"4": math.nan}, "has logprob nan"),
        ({"4": "-0.1"}, "has logprob '-0.1'"),
        ({"4": True}, "has logprob True"),
        ({"4": None}, "has logprob None"),
        ({"4": [-0.1]}, r"has logprob \[-0.1\]"),
        ({"4": math.log(0.8), " 5": math.log(0.8)}, "probabilities sum to 1.6 > 1"),
    ],
)
def test_malformed_top_logprobs_are_value_errors(logprobs, message):
    with pytest.raises(ValueError, match=message):
        masses_from_top_logprobs(top(logprobs))


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ({"choices": [{"index": 0}, {"index": "1"}]}, "indices must be 0..1"),
        ({"choices": [{"index": 1}, {"index": 1}]}, "indices must be 0..1"),
        ({"choices": [{"index": 0}, {"index": 2}]}, "indices must be 0..1"),
        ({"choices": [{"index": False}, {"index": 1}]}, "indices must be 0..1"),
        ({"choices": [{"index": 0}, "b"]}, "choices must be objects"),
        ({"choices": [{}]}, "expected 2 choices"),
        ([{}, {}], "expected 2 choices"),
    ],
)
def test_malformed_choices_are_value_errors(answer, message):
    with pytest.raises(ValueError, match=message):
        ordered_choices(answer, 2)


def test_choices_follow_their_index_or_their_position():
    assert ordered_choices({"choices": [{"index": 1, "t": "b"}, {"index": 0, "t": "a"}]}, 2) == [
        {"index": 0, "t": "a"},
        {"index": 1, "t": "b"},
    ]
    assert ordered_choices({"choices": [{"t": "a"}, {"t": "b"}]}, 2) == [{"t": "a"}, {"t": "b"}]


@pytest.mark.parametrize(
    ("base", "url"),
    [
        ("http://h:8000/v1", "http://h:8000/v1/completions"),
        ("http://h:8000/v1/", "http://h:8000/v1/completions"),
        ("http://h/v1?api-version=2", "http://h/v1/completions?api-version=2"),
        ("http://h/v1#x", "http://h/v1/completions#x"),
    ],
)
def test_completions_url(base, url):
    assert completions_url(base) == url


def critic_server(score_choice):
    """Critique "Fine."; the score call answers ``score_choice``; the text fallback "banana"."""

    def handler(path, body):
        n = len(body["prompt"])
        if body.get("logprobs"):
            return json_answer({"choices": [score_choice(i) for i in range(n)]})
        text = "banana" if body["max_tokens"] <= 4 else "Fine."
        return json_answer({"choices": [{"index": i, "text": text} for i in range(n)]})

    return serve(handler)


@pytest.mark.parametrize(
    ("score_choice", "reason"),
    [
        (lambda i: {"index": i, **top({" 4": 1000})}, "has logprob 1000"),
        (lambda i: {"index": i, **top({" 4": math.nan})}, "has logprob nan"),
        (lambda i: {"index": i, **top({" 4": 10**400})}, "has logprob 1000"),
        (lambda i: {"index": i, **top({" 4": "high"})}, "has logprob 'high'"),
        (lambda i: {"index": i, **top({" 4": -0.1, "4": -0.1})}, "sum to 1.81 > 1"),
        (lambda i: {"index": str(i), **top({" 4": -0.1})}, "indices must be 0..1"),
        (lambda i: {"index": 0, **top({" 4": -0.1})}, "indices must be 0..1"),
        (lambda i: "choice", "choices must be objects"),
        (lambda i: {"index": i, **top({"²": 0.0, "five": 0.0})}, ""),  # no score token at all
        (lambda i: {"index": i, "logprobs": [1, 2]}, ""),  # wrong type: no masses
        (lambda i: {"index": i}, ""),  # missing field: no masses
    ],
)
def test_bad_score_answers_become_failed_verdicts(score_choice, reason):
    requests = [JudgeRequest(CONTEXTS[i], RESPONSES[i], 1) for i in range(2)]
    with critic_server(score_choice) as (url, _):
        verdicts = http_critic(url).judge(requests)
    for verdict in verdicts:
        assert (verdict.critique, verdict.score, verdict.source) == ("Fine.", None, "failed")
        assert reason in verdict.error and "no score in 'banana'" in verdict.error


@pytest.mark.parametrize(
    "text_answer",
    [
        {"choices": [{"index": 0, "text": ["4"]}]},
        {"choices": [{"index": 0, "text": "9" * 5000}]},
        {"choices": [{"index": "0", "text": "4"}]},
        {"choices": []},
    ],
)
def test_bad_text_scores_become_failed_verdicts(text_answer):
    def handler(path, body):
        if body["max_tokens"] <= 4:
            return json_answer(text_answer)
        return json_answer({"choices": [{"index": 0, "text": "Fine."}]})

    with serve(handler) as (url, _):
        (verdict,) = http_critic(url).judge([JudgeRequest(CONTEXTS[0], RESPONSES[0], 1)])
    assert (verdict.score, verdict.source) == (None, "failed") and verdict.error


@pytest.mark.parametrize("body", [b"[" * 100_000 + b"]" * 100_000, b"1" * 10**6])
def test_unreadable_critic_answers_become_failed_verdicts(body):
    with serve(lambda path, _: (200, body, 0.0)) as (url, _):
        spec = CriticSpec("http", "m", 0, url=url, timeout=2, retries=0, max_response_bytes=2**21)
        (verdict,) = make_critic(spec).judge([JudgeRequest(CONTEXTS[0], RESPONSES[0], 1)])
    assert (verdict.score, verdict.source) == (None, "failed")
    assert "nested too deeply" in verdict.error or "integer string conversion" in verdict.error


def test_critic_answers_over_the_size_cap_become_failed_verdicts():
    with serve(lambda path, body: json_answer({"choices": [{"text": "x" * 1000}]})) as (url, _):
        spec = CriticSpec("http", "m", 0, url=url, timeout=2, retries=0, max_response_bytes=500)
        (verdict,) = make_critic(spec).judge([JudgeRequest(CONTEXTS[0], RESPONSES[0], 1)])
    assert verdict.source == "failed" and "max_response_bytes = 500" in verdict.error


@pytest.mark.parametrize("url", ["ftp://example.com/v1", "file:///v1", "localhost:8000/v1"])
def test_non_http_critic_urls_are_refused_at_construction(url):
    with pytest.raises(
        CriticBackendError, match="--critic_url .*must start with http:// or https://"
    ):
        HTTPCriticBackend(url, "m", timeout=2, retries=0)
    with pytest.raises(CriticBackendError, match="must start with http:// or https://"):
        make_backend(CriticSpec("http", "m", 0, url=url))
