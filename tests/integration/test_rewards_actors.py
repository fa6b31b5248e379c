"""RewardActor and CritiqueActor pools on one local Ray cluster, compute_adlf_rewards, and
``ray-adlf score`` (run_score) on a few sample rows."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray
import torch
from faults import actor_pid, kill_while_busy
from transformers import AutoModelForSequenceClassification

from ray_adlf.actors.critique import CRITIC_DTYPE, CritiquePool, critic_specs
from ray_adlf.actors.group import wait_ready
from ray_adlf.actors.reward import RewardPool, compute_adlf_rewards
from ray_adlf.actors.weight_sync import WeightSync
from ray_adlf.config import Config, RewardConfig, validate
from ray_adlf.data.records import Turn
from ray_adlf.data.sample import write_sample
from ray_adlf.debate.critics import CriticSpec, make_critic
from ray_adlf.debate.protocol import run_debate
from ray_adlf.ledger.schema import FIXED, clip_end
from ray_adlf.ledger.store import read_file, write_file
from ray_adlf.models.loading import load_causal_lm, load_tokenizer, resolve_model_path
from ray_adlf.rewards.catalog import SignalInputs
from ray_adlf.rewards.scorer import RewardScorer, make_combiner
from ray_adlf.score import run_score

pytestmark = pytest.mark.integration

CONTEXTS = [
    (Turn("user", "What is the capital of France?"),),
    (
        Turn("user", "Hi, my name is Alice."),
        Turn("assistant", "Hello Alice!"),
        Turn("user", "What is my name?"),
    ),
    (Turn("user", "What is 2 plus 3?"),),
]
RESPONSES = ["The capital of France is Paris.", "Your name is Bruno.", "Whatever."]


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def reward_model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("rm")
    tokenizer = load_tokenizer("tiny")
    model = AutoModelForSequenceClassification.from_pretrained(
        resolve_model_path("tiny"), num_labels=1, problem_type="regression"
    )
    model.config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def rewards_config(**overrides) -> RewardConfig:
    cfg = RewardConfig(
        use_coherence_reward=True,
        use_length_penalty=True,
        use_fluency_reward=False,  # computed from the round's reference pass, not here
        use_faithfulness_reward=True,
    )
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


@pytest.fixture(scope="module")
def reward_pool(cluster, reward_model_dir):
    pool = RewardPool(rewards_config(), "tiny", reward_model_dir, "standard", 256, 2, 0.5)
    yield pool
    pool.shutdown()


@pytest.fixture(scope="module")
def critique_pool(cluster):
    cfg = Config()
    cfg.debate.num_critics = 3
    cfg.debate.critique_max_new_tokens = 12
    specs = critic_specs(cfg, "tiny", "tiny")
    assert [s.persona for s in specs] == [0, 1, 2] and all(s.engine == "hf" for s in specs)
    pool = CritiquePool(specs, rounds=2, aggregate="median", num_cpus=0.25)
    yield pool
    pool.shutdown()


def test_reward_pool_shards_and_matches_a_local_scorer(reward_pool, reward_model_dir):
    assert len(reward_pool.group) == 2
    parts = reward_pool.score(CONTEXTS, RESPONSES)
    local = RewardScorer(rewards_config(), "tiny", reward_model_dir, "standard", 256).score(
        CONTEXTS, RESPONSES
    )
    assert set(parts) == set(local)
    for name in local:
        assert parts[name] == pytest.approx(local[name], abs=1e-5), name


def test_debate_with_three_critics_on_one_shared_actor_two_rounds(critique_pool):
    assert len(critique_pool.group) == 1 and critique_pool.num_critics == 3
    results = critique_pool.debate(CONTEXTS, RESPONSES)
    for result in results:
        assert 0.0 <= result.score <= 1.0 and 0.0 <= result.agreement <= 1.0
        assert result.valid == 3 and result.parse_failures == 0
        assert [len(r) for r in result.rounds] == [3, 3]


def test_compute_adlf_rewards_with_debate(reward_pool, critique_pool):
    cfg = rewards_config(
        use_debate_reward=True, adlf_alpha=0.4, use_multi_objective=True, normalize_rewards=True
    )
    combiner = make_combiner(cfg)
    tokenizer = load_tokenizer("tiny")
    ids = [tokenizer(r, add_special_tokens=False)["input_ids"] for r in RESPONSES]
    inputs = SignalInputs(CONTEXTS, RESPONSES, ids)
    batch = compute_adlf_rewards(cfg, inputs, None, reward_pool, combiner, critique_pool)
    assert batch.rewards.shape == (3,) and np.all(np.isfinite(batch.rewards))
    for name in (
        "external",
        "coherence",
        "length",
        "faithfulness",
        "debate",
        "debate_agreement",
        "z_debate",
        "z_external",
        "internal",
        "reward_raw",
    ):
        assert batch.parts[name].shape == (3,), name
    assert len(batch.debate) == 3
    state = combiner.state_dict()
    assert state["reward"]["count"] == 3 and state["objectives"]["debate"]["count"] == 3


def test_a_killed_reward_actor_is_restarted_and_no_score_is_lost_or_doubled(reward_pool):
    contexts, responses = CONTEXTS * 150, RESPONSES * 150  # a second or more of work per actor
    expected = reward_pool.score(contexts, responses)
    victim = reward_pool.group.actors[1]
    parts, pid = kill_while_busy(victim, lambda: reward_pool.score(contexts, responses))
    assert actor_pid(victim) != pid
    assert set(parts) == set(expected)
    for name in expected:
        assert parts[name].shape == (len(responses),), name
        assert parts[name] == pytest.approx(expected[name], abs=1e-6), name


def perturbed_tiny_weights() -> dict[str, torch.Tensor]:
    """The tiny model's weights plus noise, through its parameters: the tied embedding and
    LM head stay one tensor, as in a learner's state dict (the critic's fingerprint checks)."""
    generator = torch.Generator().manual_seed(7)
    model = load_causal_lm("tiny")
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.05 * torch.randn(param.shape, generator=generator))
    return model.state_dict()


def local_debate_scores(spec, weights, contexts, responses, call: int) -> list[float]:
    """The one-critic, one-round debate of ``spec`` with ``weights``, run in this process as
    the pool's ``call``-th call (one thread, as in the actor)."""
    critic = make_critic(spec)
    critic.backend.load_state_dict(weights)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        results = run_debate(
            contexts, responses, 1, 1, "mean", lambda batches: [critic.judge(batches[0], call)]
        )
    finally:
        torch.set_num_threads(threads)
    return [r.score for r in results]


def test_a_killed_critic_on_the_policy_comes_back_with_the_latest_weights(cluster):
    spec = CriticSpec("hf", "tiny", 0, max_new_tokens=12, follows_policy=True)
    contexts, responses = CONTEXTS * 12, RESPONSES * 12  # a second or more of work
    synced = perturbed_tiny_weights()
    expected = local_debate_scores(spec, synced, contexts, responses, call=1)
    initial = load_causal_lm("tiny").state_dict()
    assert expected != local_debate_scores(spec, initial, contexts, responses, call=1)
    pool = CritiquePool([spec], rounds=1, aggregate="mean", num_cpus=0.25)
    try:
        sync = WeightSync()  # as the rollout pool's push reaches the critics on the policy
        sync.add(pool.policy_actors, CRITIC_DTYPE, "CritiqueActor", on_gpu=False)
        sync.push(synced, 1)
        pool.follow(1, sync.latest)
        victim = pool.group.actors[0]
        results, pid = kill_while_busy(victim, lambda: pool.debate(contexts, responses))
        assert actor_pid(victim) != pid
        assert [r.score for r in results] == pytest.approx(expected, abs=1e-5)
        assert all(r.valid == 1 and len(r.rounds) == 1 for r in results)
    finally:
        pool.shutdown()


def test_a_pool_that_cannot_be_placed_is_a_clear_error(cluster):
    pool = CritiquePool([CriticSpec("hf", "tiny", 0)], 1, "mean", num_cpus=64)
    with pytest.raises(RuntimeError, match="1 CritiqueActor.s. asking 64 CPU each: not started"):
        wait_ready([pool.group], timeout_s=1)
    assert pool.group.actors == []


def test_run_score_writes_every_part_of_every_assistant_turn(cluster, reward_model_dir, tmp_path):
    data = write_sample(tmp_path / "data.jsonl", rows=6, seed=3)
    cfg = Config()
    cfg.data.data_path = str(data)
    cfg.model.model_name = "tiny"
    cfg.reward_model.reward_model_path = reward_model_dir
    cfg.rewards.use_coherence_reward = True
    cfg.rewards.use_debate_reward = True
    cfg.debate.num_critics = 2
    cfg.debate.critique_max_new_tokens = 8
    cfg.resources.reward_num_cpus = 0.05  # the module's pools hold 1.75 of the 2 CPUs
    cfg.resources.critic_num_cpus = 0.05
    cfg.run.ledger_max_chars = 40
    validate(cfg)
    out = run_score(cfg, tmp_path / "scores.parquet")
    table = pq.read_table(out)
    rows = table.to_pylist()
    records = [json.loads(line) for line in data.read_text().splitlines()]
    turns = [
        (number, i, turn["content"])
        for number, record in enumerate(records, start=1)
        for i, turn in enumerate(record["conversation"])
        if turn["role"] in ("assistant", "gpt")
    ]
    assert len(rows) == len(turns) and ray.is_initialized()
    # the RL ledger's schema: its fixed columns first, in order; the run-only ones null
    assert table.column_names[: len(FIXED.names)] == FIXED.names
    assert table.schema.field("reward").type == pa.float64()
    for row, (number, turn, content) in zip(rows, turns):
        assert row["prompt_id"] == f"data.jsonl:{number}" and row["turn"] == turn
        assert row["response"] == clip_end(content, 40) and len(row["prompt"]) <= 40
        assert row["round"] is None and row["advantage"] is None and row["finish_reason"] is None
        for part in ("external", "fluency", "coherence", "debate", "internal"):
            assert isinstance(row[f"part_{part}"], float), part
        assert row["critic0_critique"] is not None and row["critic1_critique"] is not None
        assert row["alpha"] == cfg.rewards.adlf_alpha
    last_turns = [row for row in rows if row["human_score"] is not None]
    assert len(last_turns) == 6
    assert [r["human_score"] for r in last_turns] == [r["meta_eval_score"] for r in records]
    # the same rows as JSON lines
    jsonl = tmp_path / "scores.jsonl"
    write_file(table, jsonl)
    assert read_file(jsonl).to_pylist() == rows
