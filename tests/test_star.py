"""STAR (retrlab.methods.star): the pairwise loss by hand, the pair mask, the sampler."""
from __future__ import annotations

import math
import random

import pytest
import torch

from retrlab.losses import compute_star_loss
from retrlab.methods.star import star_pair_mask, star_step, static_hard_negatives
from retrlab.pool import bm25_pool
from retrlab.train import Batch


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_star_loss_equals_hand_computed_value_on_two_queries():
    # columns: positive of q0, positive of q1, hard negative of q0, hard negative of q1
    scores = torch.tensor([[0.9, 0.2, 0.5, 0.1],
                           [0.3, 0.8, 0.4, 0.6]])
    keep = torch.tensor([[False, True, True, True],
                         [True, False, True, False]])  # q1's own hard doc is a labelled positive
    loss = compute_star_loss(scores.diagonal(), scores, keep, tau=1.0)
    pairs = [0.2 - 0.9, 0.5 - 0.9, 0.1 - 0.9, 0.3 - 0.8, 0.4 - 0.8]
    expected = sum(softplus(x) for x in pairs) / 5
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    # each pair is -log of a two-way softmax, the form DRhard's inbatch_train computes
    two_way = -torch.log_softmax(torch.tensor([0.9, 0.5]), 0)[0]
    assert softplus(0.5 - 0.9) == pytest.approx(two_way.item(), abs=1e-6)
    # the temperature divides the differences
    tau_loss = compute_star_loss(scores.diagonal(), scores, keep, tau=0.5)
    assert tau_loss.item() == pytest.approx(sum(softplus(x / 0.5) for x in pairs) / 5, abs=1e-6)


def test_star_loss_rejects_bad_input():
    s = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="no .* pair"):
        compute_star_loss(s.diagonal(), s, torch.zeros(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="shapes"):
        compute_star_loss(torch.zeros(2), s, torch.ones(2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="temperature"):
        compute_star_loss(torch.zeros(2), s, torch.ones(2, 3, dtype=torch.bool), tau=0)


def test_pair_mask_groups(toy_data):
    # q0..: toy sections; take two train queries with their labelled positives
    qids = toy_data.qids("train")[:2]
    pos = [toy_data.positives[q][0] for q in qids]
    other = [p for p in toy_data.search_pids("train") if p not in toy_data.qrels[qids[0]]
             and p not in toy_data.qrels[qids[1]]]
    batch = Batch(qids, toy_data.query_texts(qids), pos, [[other[0]], [other[1]]])
    mix = star_pair_mask(toy_data, batch)
    assert mix.tolist() == [[False, True, True, True], [True, False, True, True]]
    static = star_pair_mask(toy_data, batch, random_negatives=False)
    assert static.tolist() == [[False, False, True, False], [False, False, False, True]]
    in_batch = star_pair_mask(toy_data, batch, hard_negatives=False)
    assert in_batch.tolist() == [[False, True, False, False], [True, False, False, False]]
    # a hard document that is query 0's labelled positive is masked for query 0 only
    batch2 = Batch(qids, batch.queries, pos, [[other[0]], [pos[0]]])
    assert star_pair_mask(toy_data, batch2).tolist() == [[False, True, True, False], [True, False, True, True]]


def test_star_step_runs_and_needs_a_group(toy_data, minilm):
    with pytest.raises(ValueError, match="at least one"):
        star_step(False, False)
    qids = toy_data.qids("train")[:2]
    batch = Batch(qids, toy_data.query_texts(qids), [toy_data.positives[q][0] for q in qids], [["r2"], ["c4"]])
    loss = star_step()(minilm, toy_data, batch, 0.05)
    assert loss.ndim == 0 and loss.item() > 0 and loss.requires_grad


def test_static_negatives_never_positive_and_seeded(toy_data):
    pool = bm25_pool(toy_data, "train", depth=5)
    sample = static_hard_negatives(pool, n=2)
    for qid in pool.qids:
        for seed in range(5):
            assert not set(sample(qid, random.Random(seed))) & set(toy_data.positives[qid])
    first = [sample(q, random.Random(3)) for q in pool.qids]
    assert first == [sample(q, random.Random(3)) for q in pool.qids]
