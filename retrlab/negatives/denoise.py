"""RocketQA's denoised sampler: a cross-encoder decides which mined "negatives" to trust.

Qu et al., *RocketQA*, NAACL 2021 — official code ``PaddlePaddle/RocketQA``,
``research/RocketQA_NAACL2021/data_process/construct_marco_train_de.py``: a retrieved passage is a
usable negative only if its cross-encoder score is ``< ce_threshold_neg = 0.1``; up to 4 per
positive, the rest filled with random passages ranked below 50. The method's other rules (pseudo
labels, threshold tuning, grading the filter) are in ``retrlab.methods.rocketqa``.

Scores here are probabilities ``sigmoid(logit)`` of ``retrlab.encoders.CrossEncoder``.
Deviations: we sample from the retriever's top-``depth`` (10 rather than 50, to keep
cross-encoder scoring within a CPU budget) and fill from ranks ``depth..fill_depth`` of the pool
rather than from random passages.
"""
from __future__ import annotations

import random

import numpy as np

from retrlab.pool import CandidatePool


def check_threshold(threshold: float, name: str = "threshold") -> None:
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"{name} is a probability in [0, 1], got {threshold}")


def keep_as_negative(probabilities: np.ndarray, threshold: float = 0.1) -> np.ndarray:
    """Bool mask: a mined candidate stays a negative only if the cross-encoder's p < ``threshold``."""
    check_threshold(threshold)
    return np.asarray(probabilities, dtype=np.float64) < threshold


def denoised_from_pool(pool: CandidatePool, probabilities: dict[str, np.ndarray], n: int = 1,
                       threshold: float = 0.1, fill_depth: int = 50):
    """Sampler: ``n`` negatives drawn uniformly from a query's scored candidates with p < threshold.

    ``probabilities[qid]`` holds the cross-encoder's p for the query's first ``len(...)`` pool
    candidates. When fewer than ``n`` survive, the rest is drawn from pool ranks
    ``len(probabilities[qid]) .. fill_depth`` (RocketQA fills with passages ranked below 50).
    """
    check_threshold(threshold)

    def strategy(qid: str, rng: random.Random) -> list[str]:
        if qid not in probabilities:
            raise KeyError(f"query {qid!r} has no cross-encoder scores: score its candidates first")
        pids = pool.candidates(qid)[0]
        scored = len(probabilities[qid])
        clean = [p for p, keep in zip(pids[:scored], keep_as_negative(probabilities[qid], threshold)) if keep]
        picked = rng.sample(clean, min(n, len(clean)))
        filler = pids[scored:fill_depth]
        return picked + rng.sample(filler, min(n - len(picked), len(filler)))

    return strategy
