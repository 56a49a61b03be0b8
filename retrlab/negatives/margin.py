"""Score-margin filter: drop candidates that score too close to the positive (likely false negatives).

The rule of sentence-transformers' ``mine_hard_negatives`` (``sentence_transformers/util/
hard_negatives.py``; the GIST/NV-Retriever "positive-aware" mining idea, Moreira et al. 2024):

* ``absolute_margin`` m: drop candidate i when ``s_i + m > s⁺`` (keep only negatives at least m below);
* ``relative_margin`` r: drop candidate i when ``s_i > s⁺ - |s⁺| · r`` (``|s⁺|``, not ``s⁺ · (1 - r)``,
  which raised the threshold for negative positive scores: sentence-transformers #3819).

Then ``sampling="top"`` (their default) takes the best remaining candidates and ``"random"`` a
uniform draw from them. Unlike SimANS this is a hard cut, not a kernel: everything above the
cut is gone, however informative, and everything below is kept, however easy.
"""
from __future__ import annotations

import random
from typing import Literal

import numpy as np

from retrlab.negatives.uniform import Sampler
from retrlab.pool import CandidatePool


def margin_keep_mask(scores: np.ndarray, positive_score: float, absolute_margin: float | None = None,
                     relative_margin: float | None = None) -> np.ndarray:
    """(k,) bool: True where a candidate survives the margin filter(s); both may apply at once."""
    scores = np.asarray(scores, dtype=np.float64)
    keep = np.ones(len(scores), dtype=bool)
    if absolute_margin is not None:
        if absolute_margin < 0:
            raise ValueError(f"absolute_margin must be >= 0, got {absolute_margin}")
        keep &= ~(scores + absolute_margin > positive_score)
    if relative_margin is not None:
        if not 0 <= relative_margin <= 1:
            raise ValueError(f"relative_margin must be in [0, 1], got {relative_margin}")
        keep &= ~(scores > positive_score - abs(positive_score) * relative_margin)
    return keep


def margin_negatives(pool: CandidatePool, n: int = 1, absolute_margin: float | None = None,
                     relative_margin: float | None = None, depth: int | None = 100,
                     sampling: Literal["top", "random"] = "top") -> Sampler:
    """Sampler: ``n`` of the top-``depth`` candidates that pass the margin filter (fewer if too few pass)."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if sampling not in ("top", "random"):
        raise ValueError(f"sampling must be 'top' or 'random', got {sampling!r}")
    margin_keep_mask(np.zeros(1), 0.0, absolute_margin, relative_margin)  # validate the margins now

    def strategy(qid: str, rng: random.Random) -> list[str]:
        i = pool.index(qid)
        pids, scores = pool.pids[i][:depth], pool.scores[i][:depth]
        keep = margin_keep_mask(scores, float(pool.positive_scores[i]), absolute_margin, relative_margin)
        kept = [p for p, k in zip(pids, keep) if k]
        return kept[:n] if sampling == "top" else rng.sample(kept, min(n, len(kept)))

    return strategy
