"""ADORE (retrlab.methods.adore): rank weights and loss by hand, the appended positive, freezing."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from retrlab.encoders import BiEncoder
from retrlab.losses import compute_adore_loss, compute_adore_weights
from retrlab.methods.adore import AdoreStep, freeze_passage_tower, ranked_list
from retrlab.train import Batch


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_weights_are_delta_reciprocal_rank_with_cut():
    w = compute_adore_weights(4, metric_cut=3)
    expected = np.array([[0, 1 / 2, 2 / 3, 1], [1 / 2, 0, 1 / 6, 1 / 2],
                         [2 / 3, 1 / 6, 0, 1 / 3], [1, 1 / 2, 1 / 3, 0]])
    np.testing.assert_allclose(w.numpy(), expected, atol=1e-6)
    assert torch.equal(compute_adore_weights(3), compute_adore_weights(3, metric_cut=None))


def test_loss_equals_hand_computed_value():
    # list of 4: ranks 1..4, the relevant passage at rank 2 and 4 (the 4th beyond the cut)
    scores = torch.tensor([0.9, 0.7, 0.6, 0.2])
    relevant = torch.tensor([False, True, False, True])
    w = compute_adore_weights(4, metric_cut=3)
    loss = compute_adore_loss(scores, relevant, w, tau=0.5)
    # pairs (i relevant, j not): (1,0), (1,2), (3,0), (3,2); weight |1/r_i - 1/r_j|
    terms = [(1 / 2, 0.9 - 0.7), (1 / 6, 0.6 - 0.7), (1.0, 0.9 - 0.2), (1 / 3, 0.6 - 0.2)]
    expected = sum(wt * softplus(d / 0.5) for wt, d in terms) / (2 * 4)
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_loss_rejects_lists_without_pairs():
    w = compute_adore_weights(2)
    with pytest.raises(ValueError, match="relevant and one non-relevant"):
        compute_adore_loss(torch.zeros(2), torch.tensor([True, True]), w)
    with pytest.raises(ValueError, match="shapes"):
        compute_adore_loss(torch.zeros(3), torch.tensor([True, False, False]), w)


def test_positive_is_appended_only_when_not_retrieved():
    assert ranked_list(["a", "b"], {"z"}) == (["a", "b", "z"], [False, False, True])
    assert ranked_list(["a", "z"], {"z", "y"}) == (["a", "z"], [False, True])


def test_adore_step_trains_only_the_query_tower(toy_data):
    model = freeze_passage_tower(BiEncoder.tiny())
    assert not model.shared and not any(p.requires_grad for p in model.passage_model.parameters())
    pids = toy_data.search_pids("train")
    vectors = model.encode_passages(toy_data.passage_texts(pids), progress=False)
    step = AdoreStep(vectors, pids, k=3)
    qids = toy_data.qids("train")[:2]
    batch = Batch(qids, toy_data.query_texts(qids), [toy_data.positives[q][0] for q in qids], [[], []])
    loss = step(model, toy_data, batch, 0.05)
    loss.backward()
    assert all(p.grad is None for p in model.passage_model.parameters())
    assert any(p.grad is not None for p in model.query_model.parameters())
    assert len(step.train_mrr) == 1 and 0 <= step.train_mrr[0] <= 1
