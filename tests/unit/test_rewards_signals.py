import math

import numpy as np
import pytest
import torch

from ray_adlf.data.formats import render_prompt
from ray_adlf.data.records import Turn
from ray_adlf.models.loading import load_causal_lm, load_tokenizer
from ray_adlf.models.policy import pack_sequences, response_forward
from ray_adlf.rewards.models import SentenceEmbedder
from ray_adlf.rewards.signals import (
    Claim,
    coherence_from_embeddings,
    distinct_ratio,
    extract_claims,
    faithfulness_score,
    fluency_score,
    length_score,
)


@pytest.fixture(scope="module")
def embedder():
    return SentenceEmbedder()


@pytest.fixture(scope="module")
def tiny():
    return load_tokenizer("tiny"), load_causal_lm("tiny").eval()


# --- length --------------------------------------------------------------------------------


def test_length_is_one_inside_the_band_and_gaussian_outside():
    assert length_score(8, 8, 64, 8.0) == 1.0
    assert length_score(64, 8, 64, 8.0) == 1.0
    assert length_score(4, 8, 64, 8.0) == pytest.approx(math.exp(-0.5 * (4 / 8) ** 2))
    assert length_score(80, 8, 64, 8.0) == pytest.approx(math.exp(-0.5 * 4.0))  # d = 16
    assert length_score(0, 8, 64, 8.0) == pytest.approx(math.exp(-0.5))
    assert length_score(0, 8, 64, 8.0) < length_score(4, 8, 64, 8.0) < 1.0
    with pytest.raises(ValueError):
        length_score(3, 8, 64, 0.0)


# --- fluency -------------------------------------------------------------------------------


def test_distinct_ratio():
    assert distinct_ratio([1, 2, 3, 4]) == 1.0
    assert distinct_ratio([5, 5, 5, 5]) == pytest.approx(1 / 3)  # bigrams (5,5) x3, 1 unique
    assert distinct_ratio([1, 2, 1, 2, 1]) == pytest.approx(2 / 4)
    assert distinct_ratio([7]) == 1.0 and distinct_ratio([]) == 1.0


def test_fluency_formula_on_hand_made_logprobs():
    logprobs = [math.log(0.5), math.log(0.25), math.log(0.125)]  # mean log = log(0.25)
    assert fluency_score(logprobs, [1, 2, 3]) == pytest.approx(0.25)
    assert fluency_score(logprobs, [4, 4, 4]) == pytest.approx(0.25 * 0.5)  # 2 bigrams, 1 unique
    assert fluency_score([], []) == 0.0  # empty response
    with pytest.raises(ValueError):
        fluency_score([0.0], [1, 2])


def response_logprobs(model, prompt_ids, response_ids):
    """The reference pass of an RL round (``response_forward`` over packed rows), per row."""
    with torch.no_grad():
        out = response_forward(model, pack_sequences(prompt_ids, response_ids, 0), 1.0, False)
    return [out["logprobs"][i, : len(r)].tolist() for i, r in enumerate(response_ids)]


def test_reference_logprobs_match_a_direct_forward_pass(tiny):
    tokenizer, model = tiny
    context = [Turn("user", "What is the capital of France?")]
    prompt = tokenizer(render_prompt(context, tokenizer, "standard"), add_special_tokens=False)
    prompt_ids = prompt["input_ids"]
    short = tokenizer("Paris.", add_special_tokens=False)["input_ids"]
    long = tokenizer("The capital of France is Paris.", add_special_tokens=False)["input_ids"]
    got = response_logprobs(model, [prompt_ids, prompt_ids], [long, short])
    for response, values in ((long, got[0]), (short, got[1])):
        ids = torch.tensor([prompt_ids + response])
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits[0, :-1], -1)
        want = [logp[len(prompt_ids) - 1 + t, tok].item() for t, tok in enumerate(response)]
        assert values == pytest.approx(want, abs=1e-5)


def test_repeated_or_empty_response_scores_low_on_fluency(tiny):
    tokenizer, model = tiny
    context = [Turn("user", "What is the capital of France?")]
    prompt_ids = tokenizer(render_prompt(context, tokenizer, "standard"), add_special_tokens=False)[
        "input_ids"
    ]
    normal = tokenizer("The capital of France is Paris.", add_special_tokens=False)["input_ids"]
    repeated = tokenizer("Paris Paris Paris Paris Paris Paris", add_special_tokens=False)[
        "input_ids"
    ]
    lp_normal, lp_repeated = response_logprobs(model, [prompt_ids] * 2, [normal, repeated])
    f_normal = fluency_score(lp_normal, normal)
    f_repeated = fluency_score(lp_repeated, repeated)
    assert 0.0 < f_repeated < f_normal <= 1.0
    assert fluency_score([], []) == 0.0


# --- coherence -----------------------------------------------------------------------------


def test_coherence_formula_on_hand_made_vectors():
    q = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    y = np.array([[3.0, 0.0], [1.0, 1.0], [-1.0, 0.0], [5.0, 0.0]])
    got = coherence_from_embeddings(q, y, np.array([False, False, False, True]))
    assert got == pytest.approx([1.0, 1 / math.sqrt(2), 0.0, 0.0])  # negative cos -> 0; empty -> 0


def test_coherence_with_minilm_prefers_on_topic_and_zeroes_empty(embedder):
    question = "What is the capital of France?"
    responses = ["The capital of France is Paris.", "Let me tell you about my football team.", ""]
    q = embedder.embed([question] * 3)
    y = embedder.embed(responses)
    assert q.shape == (3, 384) and np.allclose(np.linalg.norm(y, axis=1), 1.0, atol=1e-5)
    on_topic, off_topic, empty = coherence_from_embeddings(q, y, np.array([False, False, True]))
    assert on_topic > 0.6 and off_topic < 0.3 and empty == 0.0


# --- faithfulness --------------------------------------------------------------------------

NAME_CONTEXT = [
    "Hi, my name is Alice.",
    "Nice to meet you, Alice! How can I help?",
    "What is my name?",
]


def test_claims_are_read_from_statements_not_questions():
    assert extract_claims("Hi, my name is Alice. What is my name?") == [
        Claim(("name",), "alice", False)
    ]
    assert extract_claims("The capital of France is not Paris.") == [
        Claim(("capital", "france"), "paris", True)
    ]
    assert extract_claims("Hello there!") == []


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("Your name is Bruno.", 0.25),  # contradicts the stated name: (0 + .5) / (0 + 1 + 1)
        ("Your name is Alice, as you told me.", 0.75),  # agrees: (1 + .5) / (1 + 0 + 1)
        ("Your name is not Alice.", 0.25),  # negates a stated fact
        ("Your name is not Bruno.", 0.5),  # consistent, nothing checkable
        ("I like trains.", 0.5),  # no claim
        ("Your name is Alice. Your name is Bruno.", 0.5),  # (1 + .5) / (1 + 1 + 1)
    ],
)
def test_faithfulness_hand_cases(response, expected):
    assert faithfulness_score(NAME_CONTEXT, response) == pytest.approx(expected)


def test_contradicting_a_stated_fact_scores_lower_than_agreeing():
    context = ["The meeting is on Tuesday at noon.", "When is the meeting?"]
    agree = faithfulness_score(context, "The meeting is on Tuesday.")
    contradict = faithfulness_score(context, "The meeting is on Friday.")
    assert contradict < 0.5 < agree
