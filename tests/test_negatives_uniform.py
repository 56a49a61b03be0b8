import random

import numpy as np
import pytest

from retrlab.negatives import RecordingSampler, random_negatives, uniform_from_pool
from retrlab.pool import pool_from_ranking


@pytest.fixture
def pool(toy_data):
    ranked = {"q0": ["c2", "c1", "c4", "c3", "r1"], "q1": ["c5", "c4", "c1", "r2"]}
    return pool_from_ranking(toy_data, "hand", list(ranked), list(ranked.values()),
                             [np.arange(len(r), 0, -1.0) for r in ranked.values()], np.zeros(2), depth=10)


def test_uniform_draws_only_from_the_top_depth(pool):
    strategy = uniform_from_pool(pool, n=1, depth=2)
    picks = {strategy("q0", random.Random(s))[0] for s in range(50)}
    assert picks == {"c2", "c4"}  # c1 is q0's labelled positive and was removed from the pool


def test_uniform_can_skip_the_top_ranks(pool):
    strategy = uniform_from_pool(pool, n=1, depth=3, skip=1)  # q0's pool: c2, c4, c3, r1 (c1 removed)
    assert {strategy("q0", random.Random(s))[0] for s in range(50)} == {"c4", "c3"}
    assert uniform_from_pool(pool, n=5, depth=50, skip=2)("q1", random.Random(0)) == ["r2"]  # all there is
    for bad in (dict(skip=-1), dict(skip=3, depth=3)):
        with pytest.raises(ValueError, match="skip must be >= 0 and below depth"):
            uniform_from_pool(pool, **bad)


def test_uniform_returns_distinct_negatives_and_is_seeded(pool):
    strategy = uniform_from_pool(pool, n=3)
    a = strategy("q1", random.Random(7))
    assert len(set(a)) == 3 and a == strategy("q1", random.Random(7))
    assert "c4" not in a  # q1's label


def test_random_negatives_never_return_a_label(toy_data):
    strategy = random_negatives(toy_data, n=3)
    for seed in range(30):
        picks = strategy("q0", random.Random(seed))
        assert len(set(picks)) == 3 and "c1" not in picks


def test_recording_measures_the_false_negative_rate(pool, toy_data):
    recorder = RecordingSampler(lambda qid, rng: ["c2", "r1"] if qid == "q0" else ["r2"])
    recorder("q0", random.Random(0))
    recorder("q1", random.Random(0))
    assert recorder.picks == [("q0", ["c2", "r1"]), ("q1", ["r2"])]
    assert recorder.false_negative_rate(toy_data) == pytest.approx(1 / 3)  # only c2 is relevant to q0


def test_negative_n_is_rejected(pool):
    with pytest.raises(ValueError, match="n must be"):
        uniform_from_pool(pool, n=-1)
