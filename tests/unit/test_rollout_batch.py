"""``Rollout``: joining batches (dynamic sampling), the plain-data round trip a checkpoint of
the rollouts in flight takes, and the columns that must agree."""

import pickle

import pytest
import torch

from ray_adlf.train.rollout_batch import Rollout


def rollout(first_id: int, version: int, ref: bool = True) -> Rollout:
    """Two prompts x two samples; ids, logprobs and scores distinct per row."""
    rows = range(first_id, first_id + 4)
    return Rollout(
        [[1, r] for r in rows],
        [[r, r + 1][: 1 + r % 2] for r in rows],
        [[-0.1 * r, -0.2 * r][: 1 + r % 2] for r in rows],
        ["stop", "length"] * 2,
        torch.tensor([0.1 * r for r in rows], dtype=torch.float32),
        2,
        [version] * 4,
        [[-0.3 * r, -0.4 * r][: 1 + r % 2] for r in rows] if ref else None,
    )


def test_concat_keeps_order_and_every_column():
    joined = Rollout.concat([rollout(0, 3), rollout(4, 3)])
    assert len(joined) == 8
    assert [ids[1] for ids in joined.prompt_ids] == list(range(8))
    assert joined.scores.tolist() == pytest.approx([0.1 * r for r in range(8)])
    assert joined.policy_versions == [3] * 8 and len(joined.ref_logprobs) == 8
    kept = joined.rows([2, 3, 6, 7])  # dynamic sampling keeps whole groups
    assert [ids[1] for ids in kept.prompt_ids] == [2, 3, 6, 7]


def test_concat_refuses_mixed_batches():
    with pytest.raises(ValueError, match="reference"):
        Rollout.concat([rollout(0, 1), rollout(4, 1, ref=False)])
    other = rollout(4, 1)
    other.group_size = 4
    with pytest.raises(ValueError, match="group sizes"):
        Rollout.concat([rollout(0, 1), other])


def test_plain_data_round_trip_is_exact():
    original = rollout(0, 2)
    data = pickle.loads(pickle.dumps(original.to_data()))
    assert all(isinstance(v, (list, int)) for v in data.values())
    restored = Rollout.from_data(data)
    assert restored.scores.dtype == torch.float32
    assert torch.equal(restored.scores, original.scores)  # float32 -> float -> float32: exact
    for name in ("prompt_ids", "response_ids", "engine_logprobs", "finish_reasons"):
        assert getattr(restored, name) == getattr(original, name)
    assert restored.policy_versions == [2] * 4 and restored.ref_logprobs == original.ref_logprobs


def test_a_version_per_row_is_required():
    with pytest.raises(ValueError):
        Rollout([[1]], [[2]], [[-0.5]], ["stop"], torch.zeros(1), 1, [])
