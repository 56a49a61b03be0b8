"""BM25 (Robertson & Zaragoza, 2009) through ``bm25s`` — the sparse baseline and the source of
DPR's hard negatives.

``bm25s`` precomputes every term's BM25 contribution into a sparse matrix, so scoring a query is a
sparse row lookup: fast enough to score all training queries in well under a second here.
Defaults k1=0.9, b=0.4 are Anserini's (Pyserini's) BM25 defaults; English stopwords are removed
and words are Snowball-stemmed ("dogs" matches "dog"), as Anserini does with Porter.
"""
from __future__ import annotations

import os

# bm25s imports JAX when it is installed and runs a computation at import; JAX then takes 75% of
# the GPU's memory up front, and the bi-encoder trained beside it runs out of memory (seen on an
# H200 with jax installed, 2026-11-30). Allocating on demand leaves the GPU to torch.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import bm25s  # noqa: E402
import numpy as np  # noqa: E402
import Stemmer  # noqa: E402


class BM25:
    def __init__(self, texts: list[str], *, k1: float = 0.9, b: float = 0.4, stopwords: str = "en") -> None:
        if not texts:
            raise ValueError("BM25 needs at least one passage")
        self.stopwords = stopwords
        self.stemmer = Stemmer.Stemmer("english")
        self.retriever = bm25s.BM25(k1=k1, b=b)
        self.retriever.index(self._tokenize(texts), show_progress=False)
        self.size = len(texts)

    def _tokenize(self, texts: list[str]):
        return bm25s.tokenize(list(texts), stopwords=self.stopwords, stemmer=self.stemmer,
                              show_progress=False)

    def search(self, queries: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` passages per query: (scores, row indices), each (Q, k); best first.

        A passage sharing no term with the query scores 0 and is not a match: its row is -1.
        """
        rows, scores = self.retriever.retrieve(self._tokenize(queries), k=min(k, self.size),
                                               show_progress=False, n_threads=1)
        rows = np.where(scores > 0, rows, -1).astype(np.int64)
        return scores.astype(np.float32), rows

    def score(self, query: str, rows: list[int]) -> np.ndarray:
        """BM25 scores of one query against the given passage rows (e.g. its labelled positives)."""
        terms = bm25s.tokenize([query], stopwords=self.stopwords, stemmer=self.stemmer,
                               return_ids=False, show_progress=False)[0]
        return self.retriever.get_scores(terms)[rows].astype(np.float32)
