import numpy as np
import pytest
from transformers import AutoModelForSequenceClassification

from ray_adlf.config import RewardConfig
from ray_adlf.data.records import Turn
from ray_adlf.models.loading import load_tokenizer, resolve_model_path
from ray_adlf.rewards.scorer import RewardScorer, make_combiner, question_text

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
    cfg = RewardConfig(
        use_coherence_reward=True,
        use_length_penalty=True,
        use_fluency_reward=True,
        use_faithfulness_reward=True,
        length_band_min=4,
        length_band_max=12,
    )
    return RewardScorer(cfg, "tiny", reward_model_dir, "standard", 256)


def test_every_enabled_part_for_a_batch(scorer):
    parts = scorer.score(CONTEXTS, RESPONSES)
    expected = {
        "response_tokens",
        "external",
        "external_score",
        "coherence",
        "length",
        "fluency",
        "faithfulness",
    }
    assert set(parts) == expected
    for name in expected - {"response_tokens", "external_score"}:
        assert parts[name].shape == (3,) and np.all((parts[name] >= 0) & (parts[name] <= 1)), name
    assert parts["external_score"] == pytest.approx(5 * parts["external"])
    assert parts["response_tokens"][2] == 0
    assert parts["coherence"][2] == 0.0 and parts["fluency"][2] == 0.0  # empty response
    assert parts["faithfulness"].tolist() == pytest.approx([0.5, 0.25, 0.5])
    assert parts["coherence"][0] > 0.5


def test_policy_token_ids_are_used_when_given(scorer):
    ids = [list(range(10, 30)), [5, 6], [7]]
    parts = scorer.score(CONTEXTS, RESPONSES, ids)
    assert parts["response_tokens"].tolist() == [20, 2, 1]
    assert parts["length"][0] < 1.0 and parts["length"][1] < 1.0  # 20 > 12 and 2 < 4


def test_parts_feed_the_combiner(scorer):
    cfg = RewardConfig(adlf_alpha=0.5)
    batch = make_combiner(cfg).combine(scorer.score(CONTEXTS, RESPONSES))
    internal = np.mean(
        [batch.parts[k] for k in ("coherence", "length", "fluency", "faithfulness")], axis=0
    )
    assert batch.rewards == pytest.approx(0.5 * batch.parts["external"] + 0.5 * internal)
    assert set(batch.means()) >= {"reward", "external", "internal"}


def test_question_is_the_last_user_turn():
    assert question_text(CONTEXTS[1]) == "What is my name?"
