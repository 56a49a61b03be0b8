import numpy as np
import pytest

from retrlab.pool import bm25_pool, dense_pool, pool_from_ranking


def test_pool_from_ranking_removes_labels_and_flags_hidden_positives(toy_data):
    # q0 = "Cats / Diet": truth {c1, c2, c3}, label c1
    ranked = [["c2", "c1", "c4", "c3", "r1"]]
    pool = pool_from_ranking(toy_data, "hand", ["q0"], ranked, [np.array([5, 4, 3, 2, 1.0])],
                             np.array([4.0]), depth=3)
    pids, scores, hidden = pool.candidates("q0")
    assert pids == ["c2", "c4", "c3"]
    assert scores.tolist() == [5.0, 3.0, 2.0]
    assert hidden.tolist() == [True, False, True]
    assert pool.positive_ranks.tolist() == [2]
    assert pool.false_negative_rate() == pytest.approx(2 / 3)
    assert pool.false_negative_rate(depth=2) == pytest.approx(1 / 2)
    assert pool.queries_with_false_negatives(depth=1) == 1.0


def test_unretrieved_positive_has_rank_zero(toy_data):
    pool = pool_from_ranking(toy_data, "hand", ["q0"], [["r1", "r2"]], [np.array([2.0, 1.0])],
                             np.array([0.5]), depth=5)
    assert pool.positive_ranks.tolist() == [0] and pool.pids[0] == ["r1", "r2"]


def test_dense_pool_against_brute_force(toy_data, _minilm):
    pool = dense_pool(_minilm, toy_data, "train", depth=4, source="minilm")
    search = toy_data.search_pids("train")
    p = _minilm.encode_passages(toy_data.passage_texts(search), progress=False)
    for i, qid in enumerate(pool.qids):
        q = _minilm.encode_queries([toy_data.queries[qid]])[0]
        scores = p @ q
        order = [search[j] for j in np.argsort(-scores, kind="stable")]
        expected = [pid for pid in order if pid not in toy_data.positives[qid]][:4]
        assert pool.pids[i] == expected
        assert toy_data.positives[qid][0] not in pool.pids[i]
        assert pool.positive_scores[i] == pytest.approx(scores[search.index(toy_data.positives[qid][0])], abs=1e-5)
        truth = toy_data.qrels[qid]
        assert pool.hidden[i].tolist() == [pid in truth for pid in pool.pids[i]]
    assert pool.false_negative_rate() > 0  # same-section passages are retrieved and are hidden positives


def test_bm25_pool_never_contains_a_labelled_positive(toy_data):
    pool = bm25_pool(toy_data, "train", depth=8)
    for qid in pool.qids:
        pids, scores, _ = pool.candidates(qid)
        assert not set(pids) & set(toy_data.positives[qid])
        assert list(scores) == sorted(scores, reverse=True)
    with pytest.raises(KeyError, match="not in this bm25 pool"):
        pool.candidates("nope")
