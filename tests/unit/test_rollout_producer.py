"""The rollout producer's schedule: which weights version samples each round, how far it runs
ahead, what a drain leaves in flight, and how its errors reach the learner. The producer is
plain threading; here its produce and push are functions that record what they are asked."""

import threading
import time

import pytest
import torch

from ray_adlf.train.rollout_batch import Rollout
from ray_adlf.train.rollout_producer import ProducedRound, RolloutProducer, needed_version


class Engines:
    """Records every push and every round sampled, with the version the engines held."""

    def __init__(self, fail_at: int | None = None, produce_s: float = 0.0):
        self.version = None
        self.events: list[tuple[str, int, int]] = []  # (what, round or version, version)
        self.fail_at, self.produce_s = fail_at, produce_s
        self.lock = threading.Lock()

    def push(self, weights, version):
        assert int(weights["w"]) == version  # the weights published as that version
        with self.lock:
            self.version = version
            self.events.append(("push", version, version))
        return {"bytes/weights": 8.0}

    def produce(self, round_index, version):
        if round_index == self.fail_at:
            raise ValueError(f"engine fault in round {round_index}")
        assert self.version == version
        time.sleep(self.produce_s)
        with self.lock:
            self.events.append(("produce", round_index, version))
        rollout = Rollout([[1]], [[2]], [[-0.5]], ["stop"], torch.zeros(1), 1, [version])
        return ProducedRound(round_index, rollout, {"reward": float(round_index)})


def producer(engines, max_lag, next_round=1, last_round=8, in_flight=()):
    made = RolloutProducer(
        engines.produce, engines.push, max_lag, next_round, last_round, list(in_flight)
    )
    made.push_now({"w": torch.tensor(0)}, 0)
    made.start()
    return made


def learn(made, engines, rounds, train_s=0.0, version_of=lambda r: r):
    """The learner's side: take, train, publish; returns each trained round's version."""
    trained = {}
    for r in rounds:
        item, _ = made.take(r)
        trained[r] = item.rollout.policy_versions[0]
        time.sleep(train_s)
        with engines.lock:
            engines.events.append(("published", r, r))
        made.publish(r, {"w": torch.tensor(version_of(r))})
    return trained


def test_needed_version():
    assert [needed_version(j, 0) for j in range(1, 5)] == [0, 1, 2, 3]
    assert [needed_version(j, 1) for j in range(1, 5)] == [0, 0, 1, 2]
    assert [needed_version(j, 2) for j in range(1, 6)] == [0, 0, 0, 1, 2]


@pytest.mark.parametrize("max_lag", [0, 1, 2])
def test_every_round_is_sampled_by_exactly_the_version_its_lag_allows(max_lag):
    engines = Engines(produce_s=0.01)
    made = producer(engines, max_lag)
    trained = learn(made, engines, range(1, 9), train_s=0.02)
    made.close()
    # round r trains at learner version r - 1: lag = min(K, r - 1), never more
    assert trained == {r: max(0, r - 1 - max_lag) for r in range(1, 9)}
    pushes = [v for what, v, _ in engines.events if what == "push"]
    assert pushes == sorted(set(pushes))  # each version pushed once, in order


def test_with_lag_one_the_next_round_is_sampled_while_the_learner_trains():
    engines = Engines(produce_s=0.01)
    made = producer(engines, 1)
    learn(made, engines, range(1, 6), train_s=0.05)
    made.close()
    order = [(what, n) for what, n, _ in engines.events]
    for r in range(1, 5):  # round r + 1 is made before the learner is done with round r
        assert order.index(("produce", r + 1)) < order.index(("published", r))
    # ... and never before the version it needs exists: round r + 2 waits for round r's weights
    for r in range(1, 4):
        assert order.index(("published", r)) < order.index(("produce", r + 2))


def test_without_lag_a_round_waits_for_the_previous_rounds_weights():
    engines = Engines()
    made = producer(engines, 0)
    learn(made, engines, range(1, 5))
    made.close()
    order = [(what, n) for what, n, _ in engines.events]
    for r in range(1, 4):
        assert order.index(("published", r)) < order.index(("produce", r + 1))


def test_a_drain_leaves_exactly_the_rounds_of_older_versions_in_flight():
    engines = Engines()
    made = producer(engines, 2)
    learn(made, engines, range(1, 4))  # published versions 1..3; version 3 feeds round 6
    made.take(4)
    made.drain(4)  # before publishing version 4: rounds 5 and 6 (versions 2, 3) are made
    assert [item.round_index for item in made.in_flight()] == [5, 6]
    assert [item.rollout.policy_versions[0] for item in made.in_flight()] == [2, 3]
    made.close()


def test_a_resumed_producer_starts_from_its_rounds_in_flight():
    engines = Engines()
    first = producer(engines, 1, last_round=6)
    learn(first, engines, range(1, 3))
    first.take(3)
    first.drain(3)  # the checkpoint after round 3: round 4 (version 2) is in flight
    saved = [ProducedRound.from_data(item.to_data()) for item in first.in_flight()]
    assert [item.round_index for item in saved] == [4]
    first.close()
    again = Engines()
    resumed = RolloutProducer(again.produce, again.push, 1, 3 + 1 + len(saved), 6, saved)
    resumed.push_now({"w": torch.tensor(3)}, 3)
    resumed.start()
    trained = learn(resumed, again, range(4, 7))
    resumed.close()
    assert trained == {4: 2, 5: 3, 6: 4}  # as in an uninterrupted run: version r - 2
    assert [n for what, n, _ in again.events if what == "produce"] == [5, 6]


def test_a_producer_error_reaches_the_learner():
    engines = Engines(fail_at=3)
    made = producer(engines, 1)
    learn(made, engines, range(1, 3))
    with pytest.raises(RuntimeError, match="rollout producer failed") as raised:
        made.take(3)
    assert isinstance(raised.value.__cause__, ValueError)
    made.close()


def test_push_now_is_refused_while_sampling():
    engines = Engines(produce_s=0.3)
    made = producer(engines, 1)
    time.sleep(0.1)  # round 1 is being made
    with pytest.raises(RuntimeError, match="drain first"):
        made.push_now({"w": torch.tensor(0)}, 0)
    made.close()


def test_without_lag_the_learners_thread_makes_each_round():
    engines = Engines()
    threads = []

    def produce(round_index, version):
        threads.append(threading.current_thread())
        return engines.produce(round_index, version)

    made = RolloutProducer(produce, engines.push, 0, 1, 4)
    made.push_now({"w": torch.tensor(0)}, 0)
    made.start()
    assert not made._thread.is_alive()  # no thread: nothing overlaps without lag
    learn(made, engines, range(1, 3))
    assert threads == [threading.main_thread()] * 2
    made.take(3)  # and version 3 is never published
    with pytest.raises(RuntimeError, match="round 4 cannot be made: version 3 was not published"):
        made.take(4)
    made.close()


def test_a_drain_holds_the_producer_through_an_evaluation_push_until_the_next_publish():
    engines = Engines()
    made = producer(engines, 1)
    learn(made, engines, range(1, 2))  # version 1 published: round 3 needs it
    made.take(2)
    made.drain(2)  # round 3 made; round 4 needs version 2
    made.push_now({"w": torch.tensor(2)}, 2)  # the evaluation of version 2
    time.sleep(0.1)
    assert [item.round_index for item in made.in_flight()] == [3]  # still the cut
    made.publish(2, {"w": torch.tensor(2)})
    assert made.take(4)[0].rollout.policy_versions == [2]
    made.close()
