"""RocketQA's denoising rules on hand-made probabilities and a hand-made pool."""
from __future__ import annotations

import random

import numpy as np
import pytest

from retrlab.negatives.denoise import denoised_from_pool, filter_precision_recall, keep_as_negative, pseudo_labels
from retrlab.pool import CandidatePool


def test_keep_as_negative_is_a_strict_threshold():
    probs = np.array([0.0, 0.05, 0.0999, 0.1, 0.5, 0.95])
    assert keep_as_negative(probs, 0.1).tolist() == [True, True, True, False, False, False]
    assert keep_as_negative(probs, 1.0).all()
    assert not keep_as_negative(probs, 0.0).any()
    with pytest.raises(ValueError, match="probability"):
        keep_as_negative(probs, 1.5)


def test_pseudo_labels():
    assert pseudo_labels(np.array([0.3, 0.95, 0.05, 0.92, 0.01]))[0] == 1  # the best, not the first > 0.9
    positive, negatives = pseudo_labels(np.array([0.3, 0.95, 0.05, 0.92, 0.01]))
    assert negatives.tolist() == [2, 4]
    positive, negatives = pseudo_labels(np.array([0.85, 0.2]))
    assert positive == -1 and negatives.tolist() == []  # nobody is confident: the query is not used
    assert pseudo_labels(np.array([0.5, 0.6]), 0.55, 0.51) == (1, pytest.approx(np.array([0])))
    with pytest.raises(ValueError, match="exceeds"):
        pseudo_labels(np.array([0.5]), 0.2, 0.3)


def test_filter_precision_recall_exact_values():
    probs = [np.array([0.9, 0.2, 0.05]), np.array([0.6, 0.01])]
    hidden = [np.array([True, False, False]), np.array([True, True])]  # 3 hidden positives among 5
    out = filter_precision_recall(probs, hidden, np.array([0.1, 0.5, 0.95]))
    # t=0.1 drops {0.9, 0.2, 0.6}: 2 hidden of 3 dropped; 2 of the 3 hidden positives caught
    # t=0.5 drops {0.9, 0.6}: both hidden; recall 2/3.  t=0.95 drops nothing: precision undefined
    assert out["precision"][:2] == pytest.approx([2 / 3, 1.0])
    assert np.isnan(out["precision"][2])
    assert out["recall"] == pytest.approx([2 / 3, 2 / 3, 0.0])
    assert out["dropped"] == pytest.approx([3 / 5, 2 / 5, 0.0])
    with pytest.raises(ValueError, match="flags"):
        filter_precision_recall(probs, [np.array([True])], np.array([0.1]))


def make_pool() -> CandidatePool:
    pids = [[f"p{i}" for i in range(8)]]
    return CandidatePool("hand", ["q"], pids, [np.linspace(1, 0, 8, dtype=np.float32)],
                         [np.zeros(8, dtype=bool)], np.array([1.0], dtype=np.float32), np.array([1]))


def test_denoised_strategy_never_returns_a_filtered_candidate():
    pool = make_pool()
    probs = {"q": np.array([0.99, 0.5, 0.01, 0.02])}  # only p2 and p3 of the scored top-4 survive
    strategy = denoised_from_pool(pool, probs, n=2, threshold=0.1)
    for seed in range(20):
        assert sorted(strategy("q", random.Random(seed))) == ["p2", "p3"]


def test_denoised_strategy_fills_from_below_the_scored_ranks():
    pool = make_pool()
    probs = {"q": np.array([0.99, 0.5, 0.01, 0.8])}  # one survivor; the second pick comes from p4..p5
    strategy = denoised_from_pool(pool, probs, n=2, threshold=0.1, fill_depth=6)
    picks = [strategy("q", random.Random(seed)) for seed in range(30)]
    assert all(p[0] == "p2" and p[1] in {"p4", "p5"} for p in picks)
    assert {p[1] for p in picks} == {"p4", "p5"}
    assert strategy("q", random.Random(3)) == strategy("q", random.Random(3))  # same seed, same picks
    with pytest.raises(KeyError, match="no cross-encoder scores"):
        strategy("other", random.Random(0))
