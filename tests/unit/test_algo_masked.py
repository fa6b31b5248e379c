import math

import pytest
import torch

from ray_adlf.algo import masked_mean, masked_sum, masked_var, masked_whiten

X = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
MASK = torch.tensor([[1, 1, 1, 0]])


def test_masked_sum_and_mean_ignore_masked_values():
    # sum = 1 + 2 + 3 = 6; mean = 6 / 3 = 2 (the masked 100 never counts)
    assert masked_sum(X, MASK).item() == 6.0
    assert masked_mean(X, MASK).item() == 2.0


def test_masked_mean_over_dim_and_empty_row():
    x = torch.tensor([[1.0, 3.0, 50.0], [7.0, 8.0, 9.0]])
    mask = torch.tensor([[True, True, False], [False, False, False]])
    # row 0: (1 + 3) / 2 = 2; row 1 has no valid element -> 0
    assert masked_mean(x, mask, dim=1).tolist() == [2.0, 0.0]


def test_masked_values_can_be_nan_or_inf():
    x = torch.tensor([2.0, float("nan"), float("inf")])
    mask = torch.tensor([1, 0, 0])
    assert masked_mean(x, mask).item() == 2.0
    assert masked_whiten(x, mask).tolist() == [0.0, 0.0, 0.0]


def test_masked_var_biased_and_unbiased():
    # deviations from 2: -1, 0, 1 -> squares sum 2; biased 2/3, unbiased 2/2 = 1
    assert masked_var(X, MASK).item() == pytest.approx(2.0 / 3.0)
    assert masked_var(X, MASK, unbiased=True).item() == pytest.approx(1.0)


def test_masked_var_unbiased_needs_two_elements():
    with pytest.raises(ValueError, match="at least 2"):
        masked_var(X, torch.tensor([[1, 0, 0, 0]]), unbiased=True)


def test_masked_whiten_hand_case():
    # mean 2, biased var 2/3 -> (x - 2) / sqrt(2/3) = -1.2247, 0, 1.2247; masked 100 -> 0
    s = math.sqrt(2.0 / 3.0)
    out = masked_whiten(X, MASK, eps=0.0)
    assert out.tolist()[0] == pytest.approx([-1 / s, 0.0, 1 / s, 0.0])
    # shift_mean=False adds the mean 2 back on valid tokens only
    kept = masked_whiten(X, MASK, shift_mean=False, eps=0.0)
    assert kept.tolist()[0] == pytest.approx([2 - 1 / s, 2.0, 2 + 1 / s, 0.0])


def test_mask_shape_must_match():
    with pytest.raises(ValueError, match="mask shape"):
        masked_mean(X, torch.ones(4))
