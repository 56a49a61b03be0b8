"""SimANS weights, sampling and strategies; the score-margin filter (hand-made pools, exact values)."""
from __future__ import annotations

import math
import random

import numpy as np
import pytest
from scipy.stats import chisquare

from retrlab.negatives.margin import margin_keep_mask, margin_negatives
from retrlab.negatives.simans import (sample_without_replacement, simans_logits, simans_negatives,
                                      simans_weights, top_k_negatives)
from retrlab.pool import CandidatePool, pool_from_ranking

SCORES = np.array([0.80, 0.70, 0.60, 0.30, 0.10])
POSITIVE = 0.75
DELTAS = (0.05, -0.05, -0.15, -0.45, -0.65)  # SCORES - POSITIVE, written out by hand


def hand_pool() -> CandidatePool:
    """q0 (Cats / Diet, positive c1 at 0.75): c2 and c3 are hidden positives. q1: positive not retrieved."""
    return CandidatePool("hand", ["q0", "q1"],
                         [["c2", "c4", "c3", "r1", "r3"], ["c1", "c2", "r1"]],
                         [SCORES.astype(np.float32), np.array([0.5, 0.4, 0.3], dtype=np.float32)],
                         [np.array([True, False, True, False, False]), np.array([False, False, False])],
                         np.array([POSITIVE, 0.2], dtype=np.float32), np.array([1, 0]))


def normalised(values):
    return np.array(values) / sum(values)


def test_gaussian_weights_equal_hand_computed_values():
    expected = normalised([math.exp(-10 * d ** 2) for d in DELTAS])
    np.testing.assert_allclose(simans_weights(SCORES, POSITIVE, a=10, b=0.0), expected, rtol=1e-6)
    # paper convention: the kernel peaks at s+ + b
    expected_b = normalised([math.exp(-10 * (d - 0.1) ** 2) for d in DELTAS])
    np.testing.assert_allclose(simans_weights(SCORES, POSITIVE, a=10, b=0.1), expected_b, rtol=1e-6)


def test_released_code_flips_the_sign_of_b_and_laplace_kernel():
    expected_code = normalised([math.exp(-10 * (d + 0.1) ** 2) for d in DELTAS])  # util_wiki.py: (s - s+ + b)
    np.testing.assert_allclose(simans_weights(SCORES, POSITIVE, 10, 0.1, "gaussian-code"), expected_code, rtol=1e-6)
    np.testing.assert_allclose(simans_weights(SCORES, POSITIVE, 10, -0.1, "gaussian"), expected_code, rtol=1e-6)
    expected_laplace = normalised([math.exp(-3 * abs(d)) for d in DELTAS])  # MARCO_until_new.py, tau = 3
    np.testing.assert_allclose(simans_weights(SCORES, POSITIVE, 3, 0.0, "laplace"), expected_laplace, rtol=1e-6)
    # the candidate closest to s+ - 0.1 (0.60 is 0.05 below, 0.70 is 0.05 above): equal weights
    w = simans_weights(SCORES, POSITIVE, 10, 0.1, "gaussian-code")
    assert w[1] == pytest.approx(w[2]) and w[1] > w[0]


def test_extreme_scores_give_finite_weights_where_the_naive_formula_underflows():
    scores, positive = np.array([50.0, 10.0, -30.0]), 80.0  # dot products in the tens (SimXNS #7)
    assert np.exp(-1.0 * (scores - positive) ** 2).sum() == 0.0  # naive: 0/0
    w = simans_weights(scores, positive, a=1.0)
    assert np.isfinite(w).all() and w.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(w, [1.0, 0.0, 0.0], atol=1e-300)
    picks = sample_without_replacement(w, 3, random.Random(0))
    assert picks[0] == 0 and sorted(picks) == [0, 1, 2]  # underflowed weights are still drawable last


def test_bad_parameters_raise_clear_errors():
    with pytest.raises(ValueError, match="a must be"):
        simans_logits(SCORES, POSITIVE, a=-1)
    with pytest.raises(ValueError, match="unknown kernel"):
        simans_weights(SCORES, POSITIVE, kernel="cosine")
    with pytest.raises(ValueError, match="finite"):
        simans_weights(np.array([np.inf]), POSITIVE)
    with pytest.raises(ValueError, match="depth"):
        simans_negatives(hand_pool(), depth=0)
    with pytest.raises(KeyError, match="nope"):
        simans_negatives(hand_pool())("nope", random.Random(0))


def test_first_draw_frequencies_match_the_weights_chi_square():
    pool, a = hand_pool(), 5.0
    strategy = simans_negatives(pool, n=1, a=a, depth=None)
    rng = random.Random(123)
    draws = 20_000
    counts = {p: 0 for p in pool.pids[0]}
    for _ in range(draws):
        counts[strategy("q0", rng)[0]] += 1
    observed = np.array([counts[p] for p in pool.pids[0]])
    expected = simans_weights(SCORES, POSITIVE, a) * draws
    assert chisquare(observed, expected).pvalue > 0.01
    # the test has power: the same counts are far from a uniform draw
    assert chisquare(observed, np.full(5, draws / 5)).pvalue < 1e-10


def test_sampling_is_without_replacement_and_seeded():
    pool = hand_pool()
    strategy = simans_negatives(pool, n=4, a=10, depth=None)
    for seed in range(50):
        picks = strategy("q0", random.Random(seed))
        assert len(picks) == len(set(picks)) == 4
    assert strategy("q0", random.Random(7)) == strategy("q0", random.Random(7))
    assert sorted(simans_negatives(pool, n=9, a=10, depth=None)("q0", random.Random(0))) == sorted(pool.pids[0])
    assert simans_negatives(pool, n=3, depth=2)("q0", random.Random(0)) in (["c2", "c4"], ["c4", "c2"])


def test_no_labelled_positive_is_ever_drawn(toy_data):
    # a ranking whose best entry is the labelled positive c1, scored exactly like itself: the kernel's peak
    ranked = ["c1", "c2", "c4", "c3", "r1", "r3"]
    pool = pool_from_ranking(toy_data, "hand", ["q0"], [ranked], [np.array([0.75, 0.74, 0.7, 0.6, 0.3, 0.1])],
                             np.array([0.75]), depth=10)
    strategy = simans_negatives(pool, n=2, a=5, b=0.0, depth=None)
    rng = random.Random(0)
    drawn = {p for _ in range(500) for p in strategy("q0", rng)}
    assert "c1" not in drawn and drawn == {"c2", "c4", "c3", "r1", "r3"}


def test_fallback_when_the_positive_was_not_retrieved():
    pool = hand_pool()  # q1: positive_ranks == 0
    assert simans_negatives(pool, n=2, fallback="lowest")("q1", random.Random(0)) == ["r1", "c2"]
    w = simans_weights(np.array([0.5, 0.4, 0.3]), 0.2, a=1000)  # the kernel would almost surely pick r1 first
    assert w.argmax() == 2
    assert simans_negatives(pool, n=1, a=1000, fallback="kernel")("q1", random.Random(0)) == ["r1"]


def test_top_k_takes_the_hardest():
    assert top_k_negatives(hand_pool(), n=2)("q0", random.Random(0)) == ["c2", "c4"]


def test_margin_filter_matches_sentence_transformers_rule():
    # absolute: drop s + m > s+  (s+ = 0.75, m = 0.1: drop 0.80 and 0.70)
    assert margin_keep_mask(SCORES, POSITIVE, absolute_margin=0.1).tolist() == [False, False, True, True, True]
    # m = 0 drops only candidates that score above the positive
    assert margin_keep_mask(SCORES, POSITIVE, absolute_margin=0.0).tolist() == [False, True, True, True, True]
    # relative: drop s > s+ - |s+| r. With s+ = -0.5 and r = 0.1 the cut is -0.55; the buggy
    # s+ (1 - r) = -0.45 (sentence-transformers #3819) would have kept -0.52.
    assert margin_keep_mask(np.array([-0.52, -0.56]), -0.5, relative_margin=0.1).tolist() == [False, True]
    assert margin_keep_mask(SCORES, POSITIVE, relative_margin=0.2).tolist() == [False, False, True, True, True]
    with pytest.raises(ValueError, match="absolute_margin"):
        margin_keep_mask(SCORES, POSITIVE, absolute_margin=-0.1)


def test_margin_strategy_top_and_random():
    pool = hand_pool()
    assert margin_negatives(pool, n=2, absolute_margin=0.1)("q0", random.Random(0)) == ["c3", "r1"]
    picks = margin_negatives(pool, n=2, absolute_margin=0.1, sampling="random")("q0", random.Random(0))
    assert len(set(picks)) == 2 and set(picks) <= {"c3", "r1", "r3"}
