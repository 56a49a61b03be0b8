import numpy as np
import pytest

from retrlab.index import FlatIndex, brute_force_search


def test_faiss_equals_brute_force():
    rng = np.random.default_rng(0)
    passages = rng.normal(size=(500, 32)).astype(np.float32)
    queries = rng.normal(size=(40, 32)).astype(np.float32)
    scores, rows = FlatIndex(passages).search(queries, 20)
    bf_scores, bf_rows = brute_force_search(queries, passages, 20)
    np.testing.assert_array_equal(rows, bf_rows)
    np.testing.assert_allclose(scores, bf_scores, rtol=1e-5, atol=1e-5)


def test_hand_made_search():
    passages = np.array([[1, 0], [0, 1], [0.6, 0.8]], dtype=np.float32)
    scores, rows = FlatIndex(passages).search(np.array([[1, 0]], dtype=np.float32), 2)
    assert rows.tolist() == [[0, 2]]
    np.testing.assert_allclose(scores, [[1.0, 0.6]])


def test_k_larger_than_corpus_is_clipped():
    scores, rows = FlatIndex(np.eye(3, dtype=np.float32)).search(np.ones((1, 3), np.float32), 10)
    assert rows.shape == (1, 3)


@pytest.mark.parametrize("bad", [np.array([[np.nan, 1.0]]), np.ones(3)])
def test_bad_vectors_are_rejected(bad):
    with pytest.raises(ValueError):
        FlatIndex(bad)


def test_dimension_mismatch_names_both_dims():
    with pytest.raises(ValueError, match="dim 3.*dim 2"):
        FlatIndex(np.eye(2, dtype=np.float32)).search(np.ones((1, 3), np.float32), 1)
