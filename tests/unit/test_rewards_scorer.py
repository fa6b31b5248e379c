import math

import numpy as np
import pytest
from transformers import AutoModelForSequenceClassification

from ray_adlf.config import RewardConfig
from ray_adlf.data.formats import render_prompt
from ray_adlf.data.records import Turn
from ray_adlf.models.loading import load_tokenizer, resolve_model_path
from ray_adlf.rewards.catalog import SignalInputs, pure_parts
from ray_adlf.rewards.reward_model import reward_model_ids
from ray_adlf.rewards.scorer import RewardScorer, closing_ids, make_combiner, question_text

CONTEXTS = [
    (Turn("user", "What is the capital of France?"),),
    (
        Turn("user", "Hi, my name is Alice."),
        Turn("assistant", "Nice to meet you, Alice!"),
        Turn("user", "What is my name?"),
    ),
    (Turn("user", "How can I sleep better?"),),
]
RESPONSES = ["The capital of France is Paris.", "Your name is Bruno.", ""]


@pytest.fixture(scope="module")
def reward_model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("rm")
    model = AutoModelForSequenceClassification.from_pretrained(
        resolve_model_path("tiny"), num_labels=1, problem_type="regression"
    )
    tokenizer = load_tokenizer("tiny")
    model.config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def scorer(reward_model_dir):
    cfg = RewardConfig(use_coherence_reward=True, use_faithfulness_reward=True)
    return RewardScorer(cfg, "tiny", reward_model_dir, "standard", 256)


def policy_rows(tokenizer, stopped: bool):
    """The policy's prompt ids and response ids of ``CONTEXTS`` / ``RESPONSES``: the rendered
    prompt, the response's own tokens and (when ``stopped``) the stop token."""
    stop = closing_ids(tokenizer, "standard")[0]
    prompts = [
        tokenizer(render_prompt(list(c), tokenizer, "standard"), add_special_tokens=False)[
            "input_ids"
        ]
        for c in CONTEXTS
    ]
    responses = [
        tokenizer(r, add_special_tokens=False)["input_ids"] + ([stop] if stopped else [])
        for r in RESPONSES
    ]
    return prompts, responses


def test_model_signals_for_a_batch(scorer):
    prompts, responses = policy_rows(scorer.rm_tokenizer, stopped=True)
    parts = scorer.score(CONTEXTS, RESPONSES, prompts, responses)
    assert set(parts) == {"response_tokens", "external", "external_score", "coherence"}
    for name in ("external", "coherence"):
        assert parts[name].shape == (3,) and np.all((parts[name] >= 0) & (parts[name] <= 1)), name
    assert parts["external_score"] == pytest.approx(5 * parts["external"])
    assert parts["response_tokens"].tolist() == [len(r) for r in responses]
    assert parts["coherence"][2] == 0.0  # empty response
    assert parts["coherence"][0] > 0.5


@pytest.mark.parametrize("stopped", [True, False], ids=["stopped", "cut at the cap"])
def test_the_reward_model_reads_the_policy_ids_as_the_rendered_conversation(scorer, stopped):
    tokenizer = scorer.rm_tokenizer
    assert scorer.rm_closing is not None  # the tiny reward model shares the policy's tokenizer
    prompts, responses = policy_rows(tokenizer, stopped)
    rendered = [
        reward_model_ids(c, r, tokenizer, "standard", 256) for c, r in zip(CONTEXTS, RESPONSES)
    ]
    assert scorer.reward_model_rows(CONTEXTS, RESPONSES, prompts, responses) == rendered
    assert scorer.reward_model_rows(CONTEXTS, RESPONSES, None, None) == rendered
    from_ids = scorer.score(CONTEXTS, RESPONSES, prompts, responses)["external"]
    from_text = scorer.score(CONTEXTS, RESPONSES)["external"]
    assert from_ids == pytest.approx(from_text, abs=1e-6)


def test_ids_are_kept_from_the_right_at_max_length(scorer):
    prompts, responses = policy_rows(scorer.rm_tokenizer, stopped=True)
    rows = scorer.reward_model_rows(CONTEXTS, RESPONSES, prompts, responses)
    scorer.max_length = 5
    try:
        cut = scorer.reward_model_rows(CONTEXTS, RESPONSES, prompts, responses)
    finally:
        scorer.max_length = 256
    assert cut == [row[-5:] for row in rows]


def test_pure_parts_by_hand():
    rewards = RewardConfig(
        use_length_penalty=True,
        use_fluency_reward=True,
        use_faithfulness_reward=True,
        length_band_min=2,
        length_band_max=3,
        length_band_width=1.0,
    )
    ids = [[5, 6, 5, 6], [7, 8], []]
    logprobs = [[-1.0, -1.0, -2.0, -2.0], [-0.5, -1.5], []]
    parts = pure_parts(SignalInputs(CONTEXTS, RESPONSES, ids, logprobs), rewards)
    assert set(parts) == {"length", "fluency", "faithfulness"}
    # 4 tokens is 1 over the band: exp(-0.5); 2 is inside; 0 is 2 under: exp(-2)
    assert parts["length"] == pytest.approx([math.exp(-0.5), 1.0, math.exp(-2.0)])
    # exp(mean logprob) * distinct bigrams: (5,6),(6,5),(5,6) -> 2/3; one bigram -> 1; empty -> 0
    assert parts["fluency"] == pytest.approx([math.exp(-1.5) * 2 / 3, math.exp(-1.0), 0.0])
    assert parts["faithfulness"] == pytest.approx([0.5, 0.25, 0.5])
    with pytest.raises(ValueError, match="reference logprobs"):
        pure_parts(SignalInputs(CONTEXTS, RESPONSES, ids, None), rewards)


def test_parts_feed_the_combiner(scorer):
    rewards = RewardConfig(adlf_alpha=0.5, use_fluency_reward=False, use_faithfulness_reward=True)
    parts = scorer.score(CONTEXTS, RESPONSES)
    parts.update(pure_parts(SignalInputs(CONTEXTS, RESPONSES, [[1]] * 3), rewards))
    batch = make_combiner(rewards).combine(parts)
    internal = np.mean([batch.parts[k] for k in ("coherence", "faithfulness")], axis=0)
    assert batch.rewards == pytest.approx(0.5 * batch.parts["external"] + 0.5 * internal)
    assert set(batch.means()) >= {"reward", "external", "internal"}


def test_question_is_the_last_user_turn():
    assert question_text(CONTEXTS[1]) == "What is my name?"
