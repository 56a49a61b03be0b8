"""Exact inner-product search: faiss ``IndexFlatIP`` and the brute-force computation it must equal.

Flat (exhaustive) search is exact, so on a few thousand passages it is both the fastest and the
honest choice; approximate indexes (HNSW, IVF) only pay off at millions of passages. For cosine
similarity, store L2-normalised vectors (``BiEncoder`` does so when ``normalize=True``): inner
product of unit vectors is the cosine.
"""
from __future__ import annotations

import faiss
import numpy as np


def _as_matrix(x: np.ndarray, name: str) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (n, dim), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


class FlatIndex:
    """A faiss exact inner-product index over the rows of ``embeddings`` (N, dim)."""

    def __init__(self, embeddings: np.ndarray) -> None:
        embeddings = _as_matrix(embeddings, "embeddings")
        if len(embeddings) == 0:
            raise ValueError("cannot build an index over 0 embeddings (an empty corpus?)")
        self.index = faiss.IndexFlatIP(embeddings.shape[1])
        self.index.add(embeddings)

    def __len__(self) -> int:
        return self.index.ntotal

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` rows per query: (scores, row indices), each (Q, k); best first."""
        queries = _as_matrix(queries, "queries")
        if queries.shape[1] != self.index.d:
            raise ValueError(f"queries have dim {queries.shape[1]}, the index has dim {self.index.d}")
        if not 1 <= k:
            raise ValueError(f"k must be >= 1, got {k}")
        return self.index.search(queries, min(k, len(self)))


def brute_force_search(queries: np.ndarray, passages: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The same search by hand: every dot product, then the ``k`` largest per query.

    Ties are broken by the lower row first (a stable sort), which is also what faiss does.
    """
    scores = queries @ passages.T  # (Q, N)
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]  # (Q, k)
    return np.take_along_axis(scores, top, axis=1), top
