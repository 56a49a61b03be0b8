"""RocketQA's denoising rules: a cross-encoder decides which mined "negatives" to trust.

Qu et al., *RocketQA*, NAACL 2021 — official code ``PaddlePaddle/RocketQA``,
``research/RocketQA_NAACL2021/data_process/construct_marco_train_de.py`` (denoised hard
negatives: a retrieved passage is a usable negative only if its cross-encoder score is
``< ce_threshold_neg = 0.1``; up to 4 per positive, the rest filled with random passages ranked
below 50) and ``construct_unlabel_train_de.py`` (data augmentation: on an unlabelled query, the
top passage is a pseudo positive if its score is ``> ce_threshold_pos = 0.9``, and the top-50
passages scoring ``< 0.1`` are pseudo negatives).

Scores here are probabilities ``sigmoid(logit)`` of ``retrlab.encoders.CrossEncoder``. The rules
are pure functions of those numbers; ``filter_precision_recall`` grades the filter against
wiki-car's ground truth, which the rules themselves never see. Deviations: we sample from the
retriever's top-``depth`` (10 rather than 50, to keep cross-encoder scoring within a CPU budget)
and fill from ranks ``depth..fill_depth`` of the pool rather than from random passages.
"""
from __future__ import annotations

import random

import numpy as np

from retrlab.pool import CandidatePool


def _check_threshold(threshold: float, name: str = "threshold") -> None:
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"{name} is a probability in [0, 1], got {threshold}")


def keep_as_negative(probabilities: np.ndarray, threshold: float = 0.1) -> np.ndarray:
    """Bool mask: a mined candidate stays a negative only if the cross-encoder's p < ``threshold``."""
    _check_threshold(threshold)
    return np.asarray(probabilities, dtype=np.float64) < threshold


def pseudo_labels(probabilities: np.ndarray, positive_threshold: float = 0.9,
                  negative_threshold: float = 0.1) -> tuple[int, np.ndarray]:
    """One unlabelled query's candidates -> (pseudo-positive index or -1, pseudo-negative indices).

    The pseudo positive is the best-scoring candidate if its p > ``positive_threshold``; pseudo
    negatives are the candidates with p < ``negative_threshold``, in their original order.
    """
    _check_threshold(positive_threshold, "positive_threshold")
    _check_threshold(negative_threshold, "negative_threshold")
    if negative_threshold > positive_threshold:
        raise ValueError(f"negative_threshold {negative_threshold} exceeds "
                         f"positive_threshold {positive_threshold}")
    probabilities = np.asarray(probabilities, dtype=np.float64)
    best = int(np.argmax(probabilities)) if len(probabilities) else -1
    positive = best if best >= 0 and probabilities[best] > positive_threshold else -1
    return positive, np.flatnonzero(probabilities < negative_threshold)


def tune_threshold(probabilities: np.ndarray, relevant: np.ndarray, target: float, rule: str) -> float:
    """Pick a RocketQA threshold on labelled data (dev), for a cross-encoder calibrated unlike RocketQA's.

    RocketQA's 0.1 / 0.9 suit its ERNIE-large cross-encoder; on your own data and model they should be
    tuned on dev (RocketQA issues #64, #65). With ``probabilities`` of candidates and their true
    ``relevant`` flags:

    * ``rule="negative"`` — the largest ``t`` such that of the candidates kept as negatives
      (``p < t``) at most a share ``target`` is relevant (0.0 if even the lowest-scored one is);
    * ``rule="positive"`` — the smallest ``t`` such that of the candidates with ``p > t`` at least a
      share ``target`` is relevant (1.0 if no ``t`` reaches it).
    """
    _check_threshold(target, "target")
    p = np.asarray(probabilities, dtype=np.float64)
    r = np.asarray(relevant, dtype=bool)
    if p.shape != r.shape or p.ndim != 1 or not len(p):
        raise ValueError(f"need one relevance flag per probability, got {p.shape} and {r.shape}")
    cuts = np.unique(p)  # candidate thresholds: every observed score
    if rule == "negative":  # keep p < t: t = cuts[i] keeps the i lowest-scored distinct values
        ok = [t for t in cuts[1:].tolist() + [np.nextafter(cuts[-1], np.inf)] if r[p < t].mean() <= target]
        return float(max(ok)) if ok else 0.0
    if rule == "positive":  # pass p > t: t = cuts[i] passes everything above it
        ok = [t for t in [np.nextafter(cuts[0], -np.inf)] + cuts[:-1].tolist() if r[p > t].mean() >= target]
        return float(min(ok)) if ok else 1.0
    raise ValueError(f"rule must be 'negative' or 'positive', got {rule!r}")


def filter_precision_recall(probabilities: list[np.ndarray], hidden: list[np.ndarray],
                            thresholds: np.ndarray) -> dict[str, np.ndarray]:
    """Grade the filter "drop a candidate when p ≥ t" against the ground truth, for each t.

    ``probabilities[i]`` and ``hidden[i]`` align with query i's candidates. Returns arrays over
    ``thresholds``: ``precision`` (dropped candidates that are hidden positives; NaN when nothing
    is dropped), ``recall`` (hidden positives that get dropped) and ``dropped`` (share dropped).
    """
    p = np.concatenate([np.asarray(x, dtype=np.float64) for x in probabilities])
    h = np.concatenate([np.asarray(x, dtype=bool) for x in hidden])
    if p.shape != h.shape:
        raise ValueError(f"{p.size} probabilities but {h.size} ground-truth flags")
    precision, recall, dropped = [], [], []
    for t in np.asarray(thresholds, dtype=np.float64):
        drop = ~keep_as_negative(p, t)
        hits = int((drop & h).sum())
        precision.append(hits / drop.sum() if drop.any() else np.nan)
        recall.append(hits / h.sum() if h.any() else np.nan)
        dropped.append(drop.mean() if len(drop) else np.nan)
    return {"threshold": np.asarray(thresholds, dtype=np.float64), "precision": np.array(precision),
            "recall": np.array(recall), "dropped": np.array(dropped)}


def denoised_from_pool(pool: CandidatePool, probabilities: dict[str, np.ndarray], n: int = 1,
                       threshold: float = 0.1, fill_depth: int = 50):
    """Strategy: ``n`` negatives drawn uniformly from a query's scored candidates with p < threshold.

    ``probabilities[qid]`` holds the cross-encoder's p for the query's first ``len(...)`` pool
    candidates. When fewer than ``n`` survive, the rest is drawn from pool ranks
    ``len(probabilities[qid]) .. fill_depth`` (RocketQA fills with passages ranked below 50).
    """
    _check_threshold(threshold)

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
