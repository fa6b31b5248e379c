"""The RL learner's state is data only: plain values as JSON, tensors as safetensors."""

import json
import pickle
import random

import numpy as np
import pytest
import torch

from ray_adlf.train.learner_state import (
    TENSORS_FILE,
    VALUES_FILE,
    load_learner_state,
    save_learner_state,
)


def adam_after_two_steps():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    for _ in range(2):
        model(torch.randn(4, 3)).pow(2).sum().backward()
        optimizer.step()
        optimizer.zero_grad()
    return model, optimizer


def test_optimizer_rng_and_numpy_values_round_trip_exactly(tmp_path):
    model, optimizer = adam_after_two_steps()
    np.random.seed(3)
    random.seed(5)
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state = {
        "round": 7,
        "reward_stats": {"count": np.int64(4), "mean": np.float64(0.25), "m2": float("inf")},
        "eval_baseline": [np.float32(2.5), 3.0],
        "optimizer": optimizer.state_dict(),
        "rng": {
            "torch": torch.get_rng_state(),
            "python": random.getstate(),
            "numpy": [kind, keys, position, has_gauss, cached],
        },
        "tied": {"a": model.weight, "b": model.weight},
        "__odd_key": None,
    }
    save_learner_state(tmp_path, state)
    assert sorted(p.name for p in tmp_path.iterdir()) == [VALUES_FILE, TENSORS_FILE]
    json.loads((tmp_path / VALUES_FILE).read_text())  # plain JSON

    loaded = load_learner_state(tmp_path)
    assert loaded["round"] == 7
    assert loaded["reward_stats"] == {"count": 4, "mean": 0.25, "m2": float("inf")}
    assert loaded["eval_baseline"] == [2.5, 3.0]
    assert loaded["__odd_key"] is None
    assert loaded["rng"]["python"] == random.getstate()
    assert torch.equal(loaded["rng"]["torch"], torch.get_rng_state())
    assert torch.equal(loaded["tied"]["a"], model.weight) and torch.equal(
        loaded["tied"]["b"], model.weight
    )
    # The optimizer state (int keys, tensors, tuples of betas) loads and steps identically.
    twin, twin_optimizer = adam_after_two_steps()
    twin_optimizer.load_state_dict(loaded["optimizer"])
    assert twin_optimizer.state_dict()["param_groups"][0]["betas"] == (0.9, 0.999)
    batch = torch.randn(4, 3)
    for m, o in ((model, optimizer), (twin, twin_optimizer)):
        m(batch).pow(2).sum().backward()
        o.step()
    assert torch.equal(model.weight, twin.weight)
    # The NumPy generator continues where it was saved.
    expected = np.random.random(3)
    kind, keys, position, has_gauss, cached = loaded["rng"]["numpy"]
    np.random.seed(99)
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    assert np.random.random(3) == pytest.approx(expected)


class RunsCode:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('pwned').write_text('x')",))


def test_a_pickle_in_place_of_the_state_is_refused_without_running_its_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    save_learner_state(tmp_path, {"round": 1})
    (tmp_path / TENSORS_FILE).write_bytes(pickle.dumps({"optimizer": RunsCode()}, protocol=2))
    with pytest.raises(ValueError, match=f"{TENSORS_FILE}: not a safetensors file"):
        load_learner_state(tmp_path)
    (tmp_path / VALUES_FILE).write_bytes(pickle.dumps(RunsCode(), protocol=2))
    with pytest.raises(ValueError, match=f"{VALUES_FILE}: not a learner state"):
        load_learner_state(tmp_path)
    assert not (tmp_path / "pwned").exists()


def test_a_missing_or_dangling_part_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{VALUES_FILE}: the checkpoint has no"):
        load_learner_state(tmp_path)
    save_learner_state(tmp_path, {"weights": torch.ones(2)})
    (tmp_path / VALUES_FILE).write_text('{"weights": {"__tensor__": "t9"}}')
    with pytest.raises(ValueError, match="tensor 't9' is missing"):
        load_learner_state(tmp_path)


def test_an_object_that_is_not_data_is_refused_when_saving(tmp_path):
    with pytest.raises(TypeError, match=r"state\.scheduler: a object cannot be saved"):
        save_learner_state(tmp_path, {"scheduler": object()})
