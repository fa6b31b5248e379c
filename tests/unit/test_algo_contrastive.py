import math

import pytest
import torch

from ray_adlf.algo import info_nce_loss, masked_mean_pool


def test_masked_mean_pool():
    hidden = torch.tensor(
        [[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]], [[5.0, 6.0], [7.0, 8.0], [9.0, 9.0]]]
    )
    mask = torch.tensor([[1, 1, 0], [0, 0, 0]])
    # row 0: ([1, 2] + [3, 4]) / 2 = [2, 3]; row 1 has no valid token -> 0
    assert masked_mean_pool(hidden, mask).tolist() == [[2.0, 3.0], [0.0, 0.0]]


def test_info_nce_three_samples_by_hand():
    embeddings = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]])
    scores = torch.tensor([5.0, 4.0, 1.0])
    # normalised: z0 = z1 = (1, 0), z2 = (0, 1); s01 = 1, s02 = s12 = 0
    # anchors 0 and 1 (positive: each other; negative: 2):
    # loss_i = -log(e^{1/T} / (e^{1/T} + e^0)) = log(1 + e^{-1/T})
    assert info_nce_loss(embeddings, scores, 1.0, 3.0).item() == pytest.approx(
        math.log(1 + math.exp(-1))
    )
    assert info_nce_loss(embeddings, scores, 0.5, 3.0).item() == pytest.approx(
        math.log(1 + math.exp(-2))
    )


def test_info_nce_four_samples_by_hand():
    embeddings = torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 0.0], [0.0, -1.0]])
    scores = torch.tensor([5.0, 5.0, 4.5, 0.0])
    # z0 = z2 = (1, 0), z1 = (0, 1), z3 = (0, -1); T = 1, high = {0, 1, 2}
    # anchor 0: others s01=0, s02=1, s03=0 -> log-denominator L = log(2 + e)
    #           positives {1, 2}: loss0 = -((0 - L) + (1 - L)) / 2 = L - 0.5
    # anchor 1: others s10=0, s12=0, s13=-1 -> log(2 + e^-1); positives {0, 2} both 0
    # anchor 2: same as anchor 0
    big = math.log(2 + math.e)
    expected = (2 * (big - 0.5) + math.log(2 + math.exp(-1))) / 3
    assert info_nce_loss(embeddings, scores, 1.0, 4.0).item() == pytest.approx(expected)


def test_info_nce_falls_when_high_scores_move_together():
    generator = torch.Generator().manual_seed(0)
    embeddings = torch.randn(6, 8, generator=generator)
    scores = torch.tensor([5.0, 4.5, 4.0, 1.0, 0.5, 0.0])
    before = info_nce_loss(embeddings, scores, 0.5, 3.0).item()
    centre = embeddings[:3].mean(dim=0)
    together = embeddings.clone()
    together[:3] = 0.5 * embeddings[:3] + 0.5 * centre
    assert info_nce_loss(together, scores, 0.5, 3.0).item() < before

    params = embeddings.clone().requires_grad_()
    info_nce_loss(params, scores, 0.5, 3.0).backward()
    stepped = (params - 0.5 * params.grad).detach()
    assert info_nce_loss(stepped, scores, 0.5, 3.0).item() < before


def test_info_nce_without_anchor_is_zero_with_zero_gradient():
    for scores in [torch.tensor([5.0, 1.0, 0.0]), torch.tensor([1.0, 1.0, 0.0])]:
        embeddings = torch.randn(3, 4, requires_grad=True)
        loss = info_nce_loss(embeddings, scores, 0.1, 3.0)
        loss.backward()
        assert loss.item() == 0.0
        assert torch.equal(embeddings.grad, torch.zeros(3, 4))


def test_info_nce_gradients_are_finite():
    embeddings = torch.randn(5, 4, requires_grad=True)
    info_nce_loss(embeddings, torch.tensor([5.0, 5.0, 0.0, 0.0, 5.0]), 0.07, 3.0).backward()
    assert bool(torch.isfinite(embeddings.grad).all())
    assert bool((embeddings.grad != 0).any())
