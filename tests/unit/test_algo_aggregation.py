import random

import pytest
import torch

from ray_adlf.algo import LOSS_AGG_MODES, aggregate_loss

# row 0: 3 valid tokens [1, 2, 3]; row 1: one token [4]; row 2: no valid token (not a sequence)
LOSS = torch.tensor([[1.0, 2.0, 3.0, 100.0], [4.0, 100.0, 100.0, 100.0], [7.0, 7.0, 7.0, 7.0]])
MASK = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]])


def test_modes_by_hand():
    # token_mean: (1 + 2 + 3 + 4) / 4 tokens = 2.5
    assert aggregate_loss(LOSS, MASK, "token_mean").item() == pytest.approx(2.5)
    # seq_mean_token_mean: (mean(1, 2, 3) + mean(4)) / 2 sequences = (2 + 4) / 2 = 3
    assert aggregate_loss(LOSS, MASK, "seq_mean_token_mean").item() == pytest.approx(3.0)
    # seq_mean_token_sum: (6 + 4) / 2 = 5
    assert aggregate_loss(LOSS, MASK, "seq_mean_token_sum").item() == pytest.approx(5.0)
    # seq_mean_token_sum_norm, L = 5: (6 + 4) / (2 * 5) = 1
    got = aggregate_loss(LOSS, MASK, "seq_mean_token_sum_norm", constant_length=5)
    assert got.item() == pytest.approx(1.0)


def test_global_denominators_replace_local_counts():
    # 10 / 8 global tokens; (2 + 4) / 4 global sequences; 10 / 4; 10 / (4 * 5)
    assert aggregate_loss(LOSS, MASK, "token_mean", global_token_count=8).item() == 1.25
    sequences = torch.tensor(4.0)
    for mode, want in [("seq_mean_token_mean", 1.5), ("seq_mean_token_sum", 2.5)]:
        got = aggregate_loss(LOSS, MASK, mode, global_sequence_count=sequences)
        assert got.item() == pytest.approx(want)
    got = aggregate_loss(
        LOSS, MASK, "seq_mean_token_sum_norm", constant_length=5, global_sequence_count=4
    )
    assert got.item() == pytest.approx(0.5)
    # each mode reads only its own denominator
    assert aggregate_loss(LOSS, MASK, "token_mean", global_sequence_count=99).item() == 2.5


@pytest.mark.parametrize("mode", LOSS_AGG_MODES)
def test_shards_with_global_counts_sum_to_the_whole_batch_loss(mode):
    generator = torch.Generator().manual_seed(0)
    loss = torch.randn(6, 5, generator=generator, dtype=torch.float64)
    mask = (torch.rand(6, 5, generator=generator) > 0.4).int()
    mask[0] = 1
    whole = aggregate_loss(loss, mask, mode, constant_length=7)
    tokens = mask.sum()
    sequences = (mask.sum(dim=1) > 0).sum()
    shards = [
        aggregate_loss(
            loss[rows],
            mask[rows],
            mode,
            constant_length=7,
            global_token_count=tokens,
            global_sequence_count=sequences,
        )
        for rows in [slice(0, 2), slice(2, 6)]
    ]
    assert sum(shards).item() == pytest.approx(whole.item(), abs=1e-12)


def test_padding_nan_never_enters_and_gradients_are_finite():
    loss = torch.tensor([[1.0, float("nan")], [float("inf"), 2.0]], requires_grad=True)
    mask = torch.tensor([[1, 0], [0, 1]])
    for mode in LOSS_AGG_MODES:
        out = aggregate_loss(loss, mask, mode, constant_length=2)
        out.backward()
        assert torch.isfinite(out) and torch.isfinite(loss.grad).all()
        loss.grad = None
    # token_mean gradient: 1 / N = 1/2 at valid tokens, 0 at padding
    aggregate_loss(loss, mask, "token_mean").backward()
    assert loss.grad.tolist() == [[0.5, 0.0], [0.0, 0.5]]


def test_all_masked_gives_zero():
    for mode in LOSS_AGG_MODES:
        out = aggregate_loss(torch.ones(2, 3), torch.zeros(2, 3), mode, constant_length=3)
        assert out.item() == 0.0


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown loss aggregation"):
        aggregate_loss(LOSS, MASK, "token-mean")
    with pytest.raises(ValueError, match="constant_length"):
        aggregate_loss(LOSS, MASK, "seq_mean_token_sum_norm")
    with pytest.raises(ValueError, match="one shape"):
        aggregate_loss(LOSS, MASK[:, :2], "token_mean")


def reference_aggregate(loss, mask, mode, constant_length):
    """Plain-Python reading of the four definitions (rows without a valid token are skipped)."""
    rows = [
        [x for x, m in zip(lrow, mrow, strict=True) if m]
        for lrow, mrow in zip(loss, mask, strict=True)
    ]
    rows = [r for r in rows if r]
    if mode == "token_mean":
        return sum(sum(r) for r in rows) / sum(len(r) for r in rows)
    if mode == "seq_mean_token_mean":
        return sum(sum(r) / len(r) for r in rows) / len(rows)
    if mode == "seq_mean_token_sum":
        return sum(sum(r) for r in rows) / len(rows)
    return sum(sum(r) for r in rows) / (len(rows) * constant_length)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("mode", LOSS_AGG_MODES)
def test_matches_reference(seed, mode):
    rng = random.Random(seed)
    loss = [[rng.uniform(-3, 3) for _ in range(8)] for _ in range(5)]
    lengths = [8] + [rng.randint(0, 8) for _ in range(4)]
    mask = [[1 if t < n else 0 for t in range(8)] for n in lengths]
    want = reference_aggregate(loss, mask, mode, constant_length=10)
    got = aggregate_loss(
        torch.tensor(loss, dtype=torch.float64), torch.tensor(mask), mode, constant_length=10
    )
    assert got.item() == pytest.approx(want, abs=1e-12)
