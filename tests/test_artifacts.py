"""Cached artifacts (retrlab.artifacts): pool round-trip, cache keys, build once then load."""
from __future__ import annotations

import numpy as np

from retrlab import artifacts
from retrlab.encoders import BiEncoder
from retrlab.pool import bm25_pool


def test_pool_round_trips_exactly(toy_data, tmp_path):
    pool = bm25_pool(toy_data, "train", depth=5)
    back = artifacts.load_pool(artifacts.save_pool(pool, tmp_path / "pool.json"))
    assert (back.source, back.qids, back.pids) == (pool.source, pool.qids, pool.pids)
    for a, b in zip(pool.scores, back.scores):
        np.testing.assert_array_equal(a.astype(np.float32), b)
    for a, b in zip(pool.hidden, back.hidden):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(pool.positive_scores, back.positive_scores)
    np.testing.assert_array_equal(pool.positive_ranks, back.positive_ranks)
    assert back.candidates(pool.qids[0])[0] == pool.candidates(pool.qids[0])[0]


def test_fingerprint_changes_with_the_data(toy_data):
    a = artifacts.fingerprint(toy_data)
    assert a == artifacts.fingerprint(toy_data)
    assert a != artifacts.fingerprint(toy_data.subset({"train": 2}))


def test_warmup_and_pool_are_built_once(toy_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RETRLAB_HOME", str(tmp_path))
    tiny = artifacts.Budget(steps=1, batch_size=2, max_length=32)
    monkeypatch.setitem(artifacts.WARMUP_BUDGET, True, tiny)
    # a small random BERT instead of MiniLM keeps the build fast; the caching logic is the same
    monkeypatch.setattr(BiEncoder, "minilm", classmethod(lambda cls, **kw: BiEncoder.tiny(**kw)))
    pool = artifacts.warmup_pool(toy_data, depth=3, smoke=True)
    built = capsys.readouterr().out
    assert "building the warm-up retriever" in built and "mining the warm-up pool" in built
    assert pool.qids == toy_data.qids("train") and all(len(p) <= 3 for p in pool.pids)
    assert all(not set(p) & set(toy_data.positives[q]) for q, p in zip(pool.qids, pool.pids))
    again = artifacts.warmup_pool(toy_data, depth=3, smoke=True)
    model = artifacts.warmup_retriever(toy_data, smoke=True)
    assert capsys.readouterr().out == ""  # both loaded from the cache, nothing rebuilt
    assert again.pids == pool.pids and model.passage_max_length == 32
    assert (tmp_path / "models" / f"warmup-{artifacts.fingerprint(toy_data)}-{tiny.key()}").is_dir()
