import numpy as np
import pytest

from retrlab.bm25 import BM25

DOCS = ["the cat sat on the mat", "dogs are loyal animals", "a cat and a dog", "quantum physics"]


def test_ranking_with_stemming_and_no_match():
    scores, rows = BM25(DOCS).search(["dog loyal", "zzzz"], 3)
    assert rows[0].tolist() == [1, 2, -1]  # "dogs" matches "dog" after stemming
    assert rows[1].tolist() == [-1, -1, -1]
    assert scores[0, 0] > scores[0, 1] > 0


def test_bm25_score_matches_the_formula():
    # one query term "cat" (tf = 1) in docs 0 and 2. bm25s' default is Lucene's BM25: idf =
    # log(1 + (N - df + .5)/(df + .5)), and no (k1 + 1) factor in the numerator (ranking is unchanged)
    k1, b, n, df = 0.9, 0.4, 4, 2
    lengths = [3, 3, 2, 2]  # after stopword removal: "cat sat mat", "dogs loyal animals", "cat dog", "quantum physics"
    avg = sum(lengths) / n
    idf = np.log(1 + (n - df + 0.5) / (df + 0.5))
    expected = [idf * 1 / (1 + k1 * (1 - b + b * lengths[i] / avg)) for i in (0, 2)]
    got = BM25(DOCS).score("cat", [0, 2])
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_empty_corpus_is_rejected():
    with pytest.raises(ValueError, match="at least one passage"):
        BM25([])
