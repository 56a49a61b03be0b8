"""ANCE (retrlab.methods.ance): the refresh schedule, the sampler, overlap, a real refresh."""
from __future__ import annotations

import random

import pytest

from retrlab.encoders import BiEncoder
from retrlab.methods.ance import AnceNegatives, compute_overlap, refresh_due
from retrlab.pool import bm25_pool
from retrlab.train import TrainConfig, train


def test_refresh_schedule():
    assert [s for s in range(1, 13) if refresh_due(s, 4)] == [4, 8, 12]
    assert not any(refresh_due(s, None) or refresh_due(s, 0) for s in range(1, 13))
    assert not refresh_due(0, 4)
    with pytest.raises(ValueError, match="interval"):
        refresh_due(3, -1)


def test_sampler_never_returns_positives_and_is_seeded(toy_data):
    pool = bm25_pool(toy_data, "train", depth=5)
    ance = AnceNegatives(toy_data, pool, depth=3, n=2)
    for qid in pool.qids:
        negs = ance(qid, random.Random(0))
        assert len(negs) == 2 and not set(negs) & set(toy_data.positives[qid])
        assert set(negs) <= set(pool.candidates(qid)[0][:3])
        assert negs == ance(qid, random.Random(0))
    assert len(ance.picks) == 2 * len(pool.qids)
    with pytest.raises(ValueError):
        AnceNegatives(toy_data, pool, depth=0)


def test_overlap_counts_negatives_in_top_depth(toy_data):
    pool = bm25_pool(toy_data, "train", depth=5)
    q = pool.qids[0]
    top = pool.candidates(q)[0]
    assert len(top) >= 2
    assert compute_overlap([(q, [top[0], top[1]])], pool, depth=1) == 0.5
    assert compute_overlap([(q, [top[0]]), (q, [top[1]])], pool, depth=5) == 1.0
    assert compute_overlap([(q, ["not-a-candidate"])], pool, depth=5) == 0.0


def test_hook_refreshes_on_schedule_not_after_last_step(toy_data):
    model = BiEncoder.tiny()  # a small model keeps this end-to-end test fast
    pool = bm25_pool(toy_data, "train", depth=4)
    ance = AnceNegatives(toy_data, pool, depth=4)
    config = TrainConfig(steps=2, batch_size=2, seed=0)
    history = train(model, toy_data, config, sampler=ance, hooks=[ance.hook(1, config.steps)], progress=False)
    assert [e.step for e in ance.log] == [1]  # step 2 is the last: no wasted refresh
    assert ance.pool is not pool and ance.pool.source == "step 1"
    assert ance.log[0].seconds > 0 and 0 <= ance.log[0].overlap <= 1
    assert [r["step"] for r in history.rows if "refresh_seconds" in r] == [1]
    assert len(ance.picks) == 2  # step 2's batch, drawn from the refreshed pool
