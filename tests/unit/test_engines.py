"""Engine-side plain Python: sampling params, batches, weight packing, engine choice, sharding."""

import subprocess
import sys

import pytest
import torch

from ray_adlf.engines import GenerationBatch, SamplingParams, pack_state_dict, unpack_state_dict
from ray_adlf.engines.select import choose_engine


def test_importing_engines_pulls_in_neither_vllm_nor_ray():
    code = (
        "import sys, ray_adlf.engines, ray_adlf.engines.hf; "
        "print(sorted(m for m in ('ray', 'vllm') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_sampling_params_checks_and_shard_seeds():
    with pytest.raises(ValueError, match="top_p"):
        SamplingParams(top_p=0.0)
    with pytest.raises(ValueError, match="n must"):
        SamplingParams(n=0)
    greedy = SamplingParams(temperature=0)
    assert greedy.greedy and greedy.logprob_temperature == 1.0
    assert SamplingParams(top_k=5).truncated and not SamplingParams().truncated
    assert SamplingParams(n=4, seed=10).for_shard(3).seed == 10 + 3 * 4
    assert SamplingParams().for_shard(3).seed is None


def test_batch_tensors_are_right_padded_and_concat_keeps_order():
    first = GenerationBatch([[1, 2]], [[5, 6, 7]], [[-0.5, -1.0, -1.5]], ["stop"], version=2)
    second = GenerationBatch([[3]], [[8]], [[-2.0]], ["length"], version=2)
    batch = GenerationBatch.concat([first, second])
    assert batch.prompt_ids == [[1, 2], [3]] and batch.finish_reasons == ["stop", "length"]
    tensors = batch.to_tensors(pad_id=0)
    assert tensors["response_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert tensors["response_mask"].tolist() == [[True, True, True], [True, False, False]]
    assert tensors["logprobs"].tolist() == [[-0.5, -1.0, -1.5], [-2.0, 0.0, 0.0]]
    with pytest.raises(ValueError, match="versions"):
        GenerationBatch.concat([first, GenerationBatch([[3]], [[8]], [[-2.0]], ["stop"])])
    with pytest.raises(ValueError, match="differ in length"):
        GenerationBatch([[1]], [[5, 6]], [[-0.5]], ["stop"])


def test_pack_unpack_round_trip_any_dtype_with_tied_weights_stored_once():
    embed = torch.randn(6, 4)
    state = {
        "embed.weight": embed,
        "head.weight": embed,  # tied: same storage
        "norm.weight": torch.randn(4).to(torch.bfloat16),
        "step": torch.tensor(3),
        "transposed": torch.randn(3, 5).T,  # not contiguous
    }
    packed = pack_state_dict(state)
    assert packed.aliases == {"head.weight": "embed.weight"}
    assert packed.nbytes == 6 * 4 * 4 + 4 * 2 + 8 + 15 * 4
    restored = unpack_state_dict(packed)
    assert set(restored) == set(state)
    for name, tensor in state.items():
        assert restored[name].dtype == tensor.dtype and torch.equal(restored[name], tensor)
    assert restored["head.weight"].data_ptr() == restored["embed.weight"].data_ptr()


def test_choose_engine_explicit_and_auto():
    assert choose_engine("hf") == "hf" and choose_engine("vllm") == "vllm"
    assert choose_engine("auto", top_k=5) == "hf"  # vLLM cannot give unrenormalised logprobs
    assert choose_engine("auto") in ("hf", "vllm")
    with pytest.raises(ValueError, match="unknown"):
        choose_engine("tgi")


def test_split_evenly_keeps_order_and_balance():
    from ray_adlf.actors.group import split_evenly

    assert split_evenly(7, 3) == [(0, 3), (3, 5), (5, 7)]
    assert split_evenly(1, 2) == [(0, 1), (1, 1)]
