import math

import pytest
import torch

from retrlab.losses import in_batch_scores, info_nce_loss, listwise_loss, pairwise_softplus_loss


def test_in_batch_scores_layout():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    n = torch.tensor([[1.0, 1.0]])
    assert in_batch_scores(q, p, n).tolist() == [[2.0, 0.0, 1.0], [0.0, 3.0, 1.0]]


def test_info_nce_equals_hand_computed_value():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    n = torch.tensor([[1.0, 1.0]])
    row0 = -math.log(math.exp(2) / (math.exp(2) + math.exp(0) + math.exp(1)))
    row1 = -math.log(math.exp(3) / (math.exp(0) + math.exp(3) + math.exp(1)))
    assert info_nce_loss(q, p, n).item() == pytest.approx((row0 + row1) / 2, rel=1e-6)
    # temperature divides every score
    row0_t = -math.log(math.exp(4) / (math.exp(4) + 1 + math.exp(2)))
    row1_t = -math.log(math.exp(6) / (1 + math.exp(6) + math.exp(2)))
    assert info_nce_loss(q, p, n, tau=0.5).item() == pytest.approx((row0_t + row1_t) / 2, rel=1e-6)


def test_excluded_columns_leave_the_softmax_but_the_target_stays():
    scores = torch.tensor([[1.0, 5.0, 0.0]])
    exclude = torch.tensor([[True, True, False]])  # the target column 0 cannot be excluded
    expected = -math.log(math.exp(1) / (math.exp(1) + math.exp(0)))
    assert listwise_loss(scores, torch.tensor([0]), exclude=exclude).item() == pytest.approx(expected)


def test_pairwise_softplus_is_ance_nll():
    pos, neg = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 3.0])
    expected = (-math.log(math.exp(2) / (math.exp(2) + math.exp(1)))
                - math.log(math.exp(0) / (math.exp(0) + math.exp(3)))) / 2
    assert pairwise_softplus_loss(pos, neg).item() == pytest.approx(expected, rel=1e-6)


def test_bad_temperature():
    with pytest.raises(ValueError, match="temperature"):
        listwise_loss(torch.zeros(1, 2), torch.tensor([0]), tau=0)
