"""Weight sync's pure parts: fingerprints, bucket plans, and a gloo broadcast between processes."""

import multiprocessing

import pytest
import torch

from ray_adlf.engines.collective import ALIGN_BYTES, WeightGroup, make_manifest, plan_buckets
from ray_adlf.engines.weights import (
    FINGERPRINT_CHUNK,
    WeightSyncError,
    fingerprint_mismatches,
    held_in_other_dtypes,
    verify_fingerprint,
    weights_fingerprint,
)


def test_fingerprint_by_hand():
    weights = {"a": torch.tensor([[1.0, -2.0], [3.0, 0.5]]), "b": torch.zeros(3)}
    assert weights_fingerprint(weights) == {
        "a": (2.5, 14.25, 4, "float32"),
        "b": (0.0, 0.0, 3, "float32"),
    }
    # Cast to the engine's dtype first: 1 + 2^-10 is not a bfloat16, it rounds to 1; an
    # integer tensor keeps its own dtype; one dtype per name where a receiver mixes them.
    mixed = {"c": torch.tensor([1.0 + 2**-10]), "i": torch.arange(3), "d": torch.tensor([0.5])}
    assert weights_fingerprint(mixed, "bfloat16") == {
        "c": (1.0, 1.0, 1, "bfloat16"),
        "i": (3.0, 5.0, 3, "int64"),
        "d": (0.5, 0.25, 1, "bfloat16"),
    }
    per_name = weights_fingerprint(mixed, {"c": "float32", "d": "bfloat16"})
    assert per_name["c"] == (1.0 + 2**-10, (1.0 + 2**-10) ** 2, 1, "float32")


def test_fingerprint_in_chunks_equals_the_whole_tensor_sum():
    values = torch.randn(FINGERPRINT_CHUNK * 2 + 5, generator=torch.Generator().manual_seed(2))
    [(total, squares, count, _)] = weights_fingerprint({"v": values}).values()
    whole = values.double()
    assert count == values.numel()
    assert total == pytest.approx(whole.sum().item(), rel=1e-12)
    assert squares == pytest.approx(whole.square().sum().item(), rel=1e-12)


def test_mismatches_ignore_summation_order_but_catch_one_changed_element():
    generator = torch.Generator().manual_seed(0)
    weights = {"w": torch.randn(1000, 300, generator=generator) * 0.02, "bias": torch.zeros(8)}
    expected = weights_fingerprint(weights)
    # The same values summed in another order (transposed, then in float64 chunks).
    transposed = weights_fingerprint({"w": weights["w"].t().contiguous(), "bias": torch.zeros(8)})
    assert fingerprint_mismatches(expected, transposed) == []
    nudged = weights["w"].clone()
    nudged[517, 3] += 1e-3  # a twentieth of one weight's typical size
    assert fingerprint_mismatches(expected, weights_fingerprint({**weights, "w": nudged})) == ["w"]
    bias = torch.zeros(8)
    bias[0] = 1e-12  # an all-zero tensor must stay exactly zero
    assert fingerprint_mismatches(expected, weights_fingerprint({**weights, "bias": bias})) == [
        "bias"
    ]
    assert fingerprint_mismatches(expected, {"w": expected["w"]}) == ["bias"]  # missing
    extra = {**expected, "lm_head.weight": (0.0, 0.0, 1, "float32")}
    assert fingerprint_mismatches(expected, extra) == ["lm_head.weight"]
    poisoned = weights["w"].clone()
    poisoned[0, 0] = float("nan")  # NaN compares unequal to everything, so it must show
    assert fingerprint_mismatches(expected, weights_fingerprint({**weights, "w": poisoned})) == [
        "w"
    ]
    held_wider = {**expected, "bias": (0.0, 0.0, 8, "float64")}
    assert fingerprint_mismatches(expected, held_wider) == ["bias"]
    assert held_in_other_dtypes(expected, held_wider) == {"bias": "float64"}


def test_verify_names_the_tensor_and_the_version():
    expected = {"a": (1.0, 1.0, 1, "float32")}
    verify_fingerprint(expected, {"a": (1.0, 1.0, 1, "float32")}, "RolloutActor 0", 3)
    with pytest.raises(
        WeightSyncError, match=r"RolloutActor 1: after weights sync 3, 1 of 1 .*\(a\)"
    ):
        verify_fingerprint(expected, {"a": (2.0, 4.0, 1, "float32")}, "RolloutActor 1", 3)


def test_bucket_plan_by_hand():
    sizes = {"a": 10, "b": 20, "c": 100, "d": 4, "e": 0}
    # Bucket of 40 bytes, offsets aligned to 16: a at 0, b at 16 (ends 36); c alone (too big);
    # d and the empty e share the next one.
    assert ALIGN_BYTES == 16
    assert plan_buckets(sizes, 40) == [
        [("a", 0), ("b", 16)],
        [("c", 0)],
        [("d", 0), ("e", 16)],
    ]
    assert plan_buckets({}, 40) == []


def test_manifest_sends_tied_tensors_once():
    embed = torch.randn(8, 4)
    state = {"embed.weight": embed, "norm.weight": torch.ones(4, dtype=torch.bfloat16)}
    state["lm_head.weight"] = embed
    manifest = make_manifest(state, bucket_bytes=1 << 20)
    assert manifest.aliases == {"lm_head.weight": "embed.weight"}
    [bucket] = manifest.buckets
    assert [(s.name, s.offset, s.nbytes) for s in bucket] == [
        ("embed.weight", 0, 128),
        ("norm.weight", 128, 8),
    ]
    assert manifest.sizes == [136] and manifest.nbytes == 136


def _state() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    embed = torch.randn(64, 16, generator=generator)
    return {
        "embed.weight": embed,
        "layer.weight": torch.randn(16, 16, generator=generator).to(torch.bfloat16),
        "layer.bias": torch.arange(5, dtype=torch.float16),
        "big.weight": torch.randn(300, 16, generator=generator),  # larger than one bucket
        "lm_head.weight": embed,
    }


def _receive(port: int, rank: int, world: int, manifest, results) -> None:
    group = WeightGroup("127.0.0.1", port, rank, world, "gloo", timeout_s=60)
    group.connect()
    received = group.receive(manifest)
    # Plain bytes: a tensor in a queue would be shared memory that dies with this process.
    results.put((rank, {name: (t.dtype, t.shape, raw_bytes(t)) for name, t in received.items()}))


def raw_bytes(tensor: torch.Tensor) -> bytes:
    return tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def test_gloo_broadcast_delivers_every_tensor_bit_exactly():
    state = _state()
    manifest = make_manifest(state, bucket_bytes=4096)
    assert len(manifest.buckets) >= 3 and max(manifest.sizes) > 4096  # big.weight alone
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    sender = WeightGroup("127.0.0.1", 0, 0, 3, "gloo", timeout_s=60)
    workers = [
        context.Process(target=_receive, args=(sender.port, rank, 3, manifest, results))
        for rank in (1, 2)
    ]
    for worker in workers:
        worker.start()
    sender.connect()
    sender.send(state, manifest)
    received = dict(results.get(timeout=60) for _ in workers)
    for worker in workers:
        worker.join(timeout=60)
    for rank in (1, 2):
        assert received[rank].keys() == state.keys()
        for name, tensor in state.items():
            dtype, shape, data = received[rank][name]
            assert (dtype, shape, data) == (tensor.dtype, tensor.shape, raw_bytes(tensor))


def _receive_nccl(port: int, manifest, results) -> None:
    torch.cuda.set_device(1)
    group = WeightGroup("127.0.0.1", port, 1, 2, "nccl", timeout_s=60)
    group.connect()
    received = group.receive(manifest)
    assert all(t.device.type == "cuda" for t in received.values())
    results.put({name: raw_bytes(t.cpu()) for name, t in received.items()})


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices")
def test_nccl_broadcast_delivers_every_tensor_bit_exactly():
    torch.cuda.set_device(0)
    state = {name: tensor.cuda() for name, tensor in _state().items()}
    manifest = make_manifest(state, bucket_bytes=4096)
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    sender = WeightGroup("127.0.0.1", 0, 0, 2, "nccl", timeout_s=60)
    worker = context.Process(target=_receive_nccl, args=(sender.port, manifest, results))
    worker.start()
    sender.connect()
    sender.send(state, manifest)
    received = results.get(timeout=120)
    worker.join(timeout=60)
    assert received == {name: raw_bytes(tensor.cpu()) for name, tensor in state.items()}
