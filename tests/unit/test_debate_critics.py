import math

import pytest
from stub_server import json_answer, serve

from ray_adlf.data.records import Turn
from ray_adlf.debate.critics import (
    Critic,
    CriticSpec,
    HFCriticBackend,
    HTTPCriticBackend,
    make_critic,
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
    assert all(path == "/completions" for path, _ in requests)


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
    critique_request, score_request = (body for _, body in requests)
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
