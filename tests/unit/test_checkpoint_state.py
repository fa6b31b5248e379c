"""The RL learner's state file holds only tensors and plain values, read with weights_only."""

import pickle
import random

import numpy as np
import pytest
import torch

from ray_adlf.train.ppo import plain


def test_state_with_numpy_values_round_trips_through_weights_only(tmp_path):
    np.random.seed(3)
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state = {
        "reward_stats": {"count": np.int64(4), "mean": np.float64(0.25), "m2": 1.5},
        "rng": {"python": random.getstate(), "numpy": [kind, keys, position, has_gauss, cached]},
        "eval_baseline": [np.float32(2.5), 3.0],
    }
    torch.save(plain(state), tmp_path / "state.pt")
    loaded = torch.load(tmp_path / "state.pt", weights_only=True)
    assert loaded["reward_stats"] == {"count": 4, "mean": 0.25, "m2": 1.5}
    assert loaded["eval_baseline"] == [2.5, 3.0]
    assert loaded["rng"]["python"] == random.getstate()
    expected = np.random.random(3)
    kind, keys, position, has_gauss, cached = loaded["rng"]["numpy"]
    np.random.seed(99)
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    assert np.random.random(3) == pytest.approx(expected)


class RunsCode:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('pwned').write_text('x')",))


def test_a_crafted_state_file_is_refused_without_running_its_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with open(tmp_path / "state.pt", "wb") as handle:
        pickle.dump({"optimizer": RunsCode()}, handle, protocol=2)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(tmp_path / "state.pt", weights_only=True)
    assert not (tmp_path / "pwned").exists()
