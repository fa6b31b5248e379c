"""Rollout engines behind RolloutPool, on the tiny model, against the learner (no mocks).

Every test runs once per engine (``hf``; ``vllm`` when vLLM is importable) on a module-scoped
pool of two RolloutActors in a local Ray cluster; pytest groups the tests by engine, so each pool
starts once. ``Served`` pairs a pool with the learner whose weights it currently serves: tests
that sync weights update both, so every test holds whatever order it runs in.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import time
from dataclasses import dataclass

import pytest
import ray
import torch
from faults import actor_pid, kill_while_busy

from ray_adlf.actors import weight_sync
from ray_adlf.actors.rollout import RolloutPool
from ray_adlf.actors.weight_sync import WeightSync
from ray_adlf.engines import GenerationBatch, SamplingParams, collective
from ray_adlf.engines.weights import WeightSyncError
from ray_adlf.models.loading import load_causal_lm, load_tokenizer

pytestmark = pytest.mark.integration

# Both sides run the same float32 weights; what differs is kernels and reduction order (batched,
# left-padded, KV-cached decoding in the engine vs one full forward in the learner; vLLM's CPU
# attention and GEMM kernels vs torch). Measured here: at most 3e-6 for both engines, before and
# after weight syncs. 1e-3 leaves room for other CPUs, thread counts and larger models while
# staying far below the error of a wrong temperature (0.5 here for T = 1 instead of 0.7; the
# parity test checks it exceeds 30x the tolerance).
LOGPROB_ATOL = 1e-3
EOS_ID = 6
USER_TEXTS = [
    "hi",
    "What is the capital of France?",
    "Write a short poem about the sea, the wind and the long grey evening light.",
    "1 2 3 4 5",
    "Explain in detail why the sky looks blue during the day but red at sunset.",
    "ok",
    "Summarise the following: the meeting was moved to Tuesday because the room was booked.",
]
VLLM_MISSING = importlib.util.find_spec("vllm") is None


@dataclass
class Served:
    """A pool and the learner model whose weights its actors serve (version ``pool.version``)."""

    pool: RolloutPool
    learner: torch.nn.Module


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    with pytest.MonkeyPatch.context() as env:
        env.setenv("VLLM_CACHE_ROOT", str(tmp_path_factory.mktemp("vllm_cache")))
        env.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
        ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
        yield
        ray.shutdown()


@pytest.fixture(scope="module")
def prompts() -> list[list[int]]:
    tokenizer = load_tokenizer("tiny")
    return [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True, return_dict=False
        )
        for text in USER_TEXTS
    ]


@pytest.fixture(
    scope="module",
    params=[
        "hf",
        pytest.param(
            "vllm",
            marks=[pytest.mark.vllm, pytest.mark.skipif(VLLM_MISSING, reason="vllm missing")],
        ),
    ],
)
def served(request, ray_cluster) -> Served:
    pool = RolloutPool(request.param, "tiny", num_workers=2, num_cpus=1, max_restarts=2)
    yield Served(pool=pool, learner=load_causal_lm("tiny").eval())
    pool.shutdown()


def learner_greedy(model: torch.nn.Module, prompt: list[int], max_new_tokens: int) -> list[int]:
    """The learner's own ``generate(do_sample=False)`` on one unpadded prompt (stops at EOS)."""
    ids = torch.tensor([prompt])
    with torch.no_grad():
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            do_sample=False,
            max_new_tokens=max_new_tokens,
            eos_token_id=EOS_ID,
            pad_token_id=0,
        )
    return out[0, len(prompt) :].tolist()


def learner_logprobs(
    model: torch.nn.Module, prompt: list[int], response: list[int], temperature: float
) -> torch.Tensor:
    """``log_softmax(logits / T)`` of each response token from one full forward: [len(response)]."""
    ids = torch.tensor([prompt + response])
    with torch.no_grad():
        logits = model(ids).logits[0, len(prompt) - 1 : -1].float()
    logprobs = torch.log_softmax(logits / temperature, dim=-1)
    return logprobs.gather(1, torch.tensor(response)[:, None])[:, 0]


def max_logprob_error(model: torch.nn.Module, batch: GenerationBatch, temperature: float) -> float:
    """Largest |engine - learner| logprob over all response tokens of ``batch``."""
    return max(
        (learner_logprobs(model, p, r, temperature) - torch.tensor(lp)).abs().max().item()
        for p, r, lp in zip(batch.prompt_ids, batch.response_ids, batch.response_logprobs)
    )


def perturb(model: torch.nn.Module, seed: int, scale: float = 0.05) -> torch.nn.Module:
    """A copy of ``model`` with N(0, scale^2) noise added to every parameter."""
    changed = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in changed.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * scale)
    return changed


def assert_greedy_matches_learner(served: Served, prompts: list[list[int]], max_new: int = 24):
    batch = served.pool.generate(prompts, SamplingParams(temperature=0, max_new_tokens=max_new))
    assert batch.version == served.pool.version
    assert batch.prompt_ids == prompts
    for prompt, response in zip(prompts, batch.response_ids):
        assert response == learner_greedy(served.learner, prompt, max_new)
    assert max_logprob_error(served.learner, batch, 1.0) < LOGPROB_ATOL
    return batch


def test_parity_with_learner(served, prompts):
    greedy = assert_greedy_matches_learner(served, prompts)
    assert [t.actor for t in greedy.timings] == [0, 1]
    assert sum(t.prompts for t in greedy.timings) == len(prompts)

    temperature, n = 0.7, 3
    params = SamplingParams(temperature=temperature, max_new_tokens=16, n=n, seed=7)
    sampled = served.pool.generate(prompts, params)
    assert sampled.prompt_ids == [p for p in prompts for _ in range(n)]  # prompt-major
    assert len({tuple(r) for r in sampled.response_ids}) > len(prompts)  # samples differ
    assert max_logprob_error(served.learner, sampled, temperature) < LOGPROB_ATOL
    # The tolerance can tell the learner's temperature from a wrong one (raw T = 1 logprobs).
    assert max_logprob_error(served.learner, sampled, 1.0) > 30 * LOGPROB_ATOL
    assert served.pool.generate(prompts, params).response_ids == sampled.response_ids  # seeded

    tensors = sampled.to_tensors()
    lengths = torch.tensor([len(r) for r in sampled.response_ids])
    assert tensors["response_ids"].shape == (len(prompts) * n, int(lengths.max()))
    assert torch.equal(tensors["response_mask"].sum(1), lengths)
    assert torch.all(tensors["logprobs"][~tensors["response_mask"]] == 0)


def test_top_k_top_p_sample_from_the_cut_but_report_unrenormalised_logprobs(served, prompts):
    params = SamplingParams(temperature=0.7, top_k=20, top_p=0.9, max_new_tokens=16, n=2, seed=5)
    if served.pool.engine == "vllm":  # vLLM would renormalise over the kept tokens: refused
        with pytest.raises(ValueError, match="top-k/top-p"):
            served.pool.generate(prompts, params)
        return
    batch = served.pool.generate(prompts, params)
    assert max_logprob_error(served.learner, batch, params.temperature) < LOGPROB_ATOL
    for prompt, response in zip(batch.prompt_ids, batch.response_ids):
        ids = torch.tensor([prompt + response])
        with torch.no_grad():
            logits = served.learner(ids).logits[0, len(prompt) - 1 : -1]
        ranks = (logits > logits.gather(1, torch.tensor(response)[:, None])).sum(1)
        assert int(ranks.max()) < params.top_k


def test_stops_on_eos(served, prompts):
    # Near-uniform sampling from the random tiny model draws EOS (1 of 1024) now and then.
    params = SamplingParams(temperature=1.0, max_new_tokens=96, n=8, seed=3)
    batch = served.pool.generate(prompts, params)
    assert "stop" in batch.finish_reasons and "length" in batch.finish_reasons
    for response, reason in zip(batch.response_ids, batch.finish_reasons):
        assert EOS_ID not in response[:-1]
        assert (reason == "stop") == (response[-1] == EOS_ID)
        assert reason == "stop" or len(response) == params.max_new_tokens
    assert max_logprob_error(served.learner, batch, 1.0) < LOGPROB_ATOL

    no_stop = served.pool.generate(prompts, dataclasses.replace(params, stop_on_eos=False))
    assert all(len(r) == params.max_new_tokens for r in no_stop.response_ids)
    assert set(no_stop.finish_reasons) == {"length"}


def test_weight_sync_changes_greedy_output(served, prompts):
    before = served.pool.generate(prompts, SamplingParams(temperature=0, max_new_tokens=24))
    learner = perturb(served.learner, seed=served.pool.version + 1)
    old_version = served.pool.version
    version = served.pool.sync_weights(learner.state_dict())
    served.learner = learner
    assert version == old_version + 1 == served.pool.version
    assert served.pool.versions() == [version, version]
    after = assert_greedy_matches_learner(served, prompts)
    assert after.response_ids != before.response_ids
    sync = served.pool.last_sync
    assert sync is not None and len(sync.load_s) == 2 and sync.nbytes > 0


def test_killed_actor_comes_back_with_latest_weights(served, prompts):
    learner = perturb(served.learner, seed=served.pool.version + 1)
    version = served.pool.sync_weights(learner.state_dict())
    served.learner = learner
    victim = served.pool.group.actors[1]
    # Seconds of work per actor, so the kill lands while the victim is generating its shard.
    work = [p for p in prompts for _ in range(24)]
    params = SamplingParams(temperature=0, max_new_tokens=256, stop_on_eos=False)
    batch, pid = kill_while_busy(victim, lambda: served.pool.generate(work, params))
    killed = batch.timings[1]
    assert killed.retries >= 1, "the kill landed after the shard finished"
    assert killed.weight_load_s > 0  # the restarted process loaded the synced weights first
    assert actor_pid(victim) != pid
    assert batch.version == version and len(batch) == len(work)
    assert served.pool.versions() == [version, version]
    assert_greedy_matches_learner(served, prompts)


def corrupted(state_dict: dict, name: str = "model.layers.0.mlp.down_proj.weight") -> dict:
    """``state_dict`` with one element of ``name`` nudged by 1e-3 (a copy; the learner's own
    tensors stay as they are)."""
    tensor = state_dict[name].clone()
    tensor.view(-1)[7] += 1e-3
    return {**state_dict, name: tensor}


def use_sync(pool: RolloutPool, method: str) -> None:
    """Give ``pool`` a fresh ``WeightSync`` of ``method`` over its actors."""
    pool.sync.close()
    pool.sync = WeightSync(method)
    pool.sync.add(pool.group.actors, "float32", "RolloutActor", on_gpu=False)


def test_collective_sync_serves_the_learner_weights(served, prompts):
    use_sync(served.pool, "collective")
    try:
        for seed in (11, 12):  # the group is built on the first push, reused on the second
            learner = perturb(served.learner, seed=seed)
            version = served.pool.sync_weights(learner.state_dict())
            served.learner = learner
            assert served.pool.versions() == [version, version]
            assert_greedy_matches_learner(served, prompts)
        sync = served.pool.last_sync
        assert sync.method == "collective" and sync.verified and len(sync.load_s) == 2
        # Tied embeddings travel once: the bytes are the distinct tensors' bytes, at least.
        stored = {t.data_ptr(): t for t in served.learner.state_dict().values()}
        assert sync.nbytes >= sum(t.numel() * t.element_size() for t in stored.values())
    finally:
        use_sync(served.pool, "object_store")


@pytest.mark.parametrize("method", ["object_store", "collective"])
def test_a_corrupted_sync_is_caught(served, prompts, method, monkeypatch):
    # The sender's copy of one tensor is corrupted after the learner's fingerprint is taken,
    # as a transfer fault would: the engine loads it, its fingerprint differs, the push stops.
    use_sync(served.pool, method)
    try:
        target = {"object_store": weight_sync, "collective": collective}[method]
        real = target.pack_state_dict if method == "object_store" else target.distinct_tensors
        with monkeypatch.context() as patch:
            name = "pack_state_dict" if method == "object_store" else "distinct_tensors"
            patch.setattr(target, name, lambda state: real(corrupted(dict(state))))
            with pytest.raises(WeightSyncError, match=r"RolloutActor 0: .*down_proj"):
                served.pool.sync_weights(served.learner.state_dict())
        served.pool.sync_weights(served.learner.state_dict())  # a clean push mends it
        assert served.pool.last_sync.verified
        assert_greedy_matches_learner(served, prompts)
    finally:
        use_sync(served.pool, "object_store")


def test_a_restarted_engine_stops_a_collective_sync_with_a_clear_error(served, prompts):
    use_sync(served.pool, "collective")
    try:
        served.pool.sync_weights(served.learner.state_dict())  # builds the group
        victim = served.pool.group.actors[1]
        pid = actor_pid(victim)
        ray.kill(victim, no_restart=False)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # Ray restarts it (max_restarts)
            try:
                if actor_pid(victim) != pid:
                    break
            except ray.exceptions.RayActorError:
                time.sleep(0.2)
        with pytest.raises(WeightSyncError, match="RolloutActor 1 restarted and left"):
            served.pool.sync_weights(served.learner.state_dict())
    finally:
        use_sync(served.pool, "object_store")
    served.pool.sync_weights(served.learner.state_dict())  # the object store reaches it again
    assert_greedy_matches_learner(served, prompts)
