"""RocketQA's denoising rules on hand-made probabilities and a hand-made pool."""
from __future__ import annotations

import random

import numpy as np
import pytest

from retrlab.methods.rocketqa import filter_precision_recall, pseudo_labels, tune_threshold
from retrlab.negatives.denoise import denoised_from_pool, keep_as_negative
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


def test_tune_threshold_exact_values():

    p = np.array([0.05, 0.2, 0.3, 0.6, 0.8, 0.95])
    relevant = np.array([False, False, True, False, True, True])
    # negatives kept with p < t: below 0.3 none relevant; 0.3 itself is relevant, so t = 0.3 is the largest clean cut
    assert tune_threshold(p, relevant, 0.0, "negative") == 0.3
    # allowing 1 relevant in 4 kept: p < 0.8 keeps [0.05, 0.2, 0.3, 0.6], one relevant -> 25%
    assert tune_threshold(p, relevant, 0.25, "negative") == 0.8
    # positives pass with p > t: above 0.6 both relevant (100%); above 0.2 three of four; above 0.05 three of five
    assert tune_threshold(p, relevant, 1.0, "positive") == 0.6
    assert tune_threshold(p, relevant, 0.65, "positive") == 0.2
    assert tune_threshold(p, np.zeros(6, bool), 0.5, "positive") == 1.0  # unreachable: pass nothing
    assert tune_threshold(p, np.ones(6, bool), 0.0, "negative") == 0.0  # every candidate relevant: keep none
    with pytest.raises(ValueError, match="rule must be"):
        tune_threshold(p, relevant, 0.5, "both")
    with pytest.raises(ValueError, match="one relevance flag per probability"):
        tune_threshold(p, relevant[:3], 0.5, "negative")
    with pytest.raises(ValueError, match="target is a probability"):
        tune_threshold(p, relevant, 1.5, "negative")
