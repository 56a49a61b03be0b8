"""SimANS: sample the *ambiguous* negatives, the ones that score close to the positive.

Zhou et al. 2022, "SimANS: Simple Ambiguous Negatives Sampling for Dense Text Retrieval" (EMNLP
industry track); official code microsoft/SimXNS, folder ``SimANS/``. Top-ranked candidates are often
false negatives ("too hard"), low-ranked ones teach nothing ("too easy"); SimANS samples each
query's negatives from its top-k candidates with

    p_i ∝ exp(-a · (s(q, d_i) - s(q, d⁺) - b)²)        (the paper's formula, ``kernel="gaussian"``)

so the candidates scoring near the positive (shifted by ``b``) are the likeliest picks.

The released code has two other variants, selectable here and named after the file they follow:

* ``kernel="gaussian-code"`` — ``SimANS/utils/util_wiki.py`` (NQ/TQ, ``TraditionDataset``) computes
  ``exp(-(s_i - s⁺ + b)² · a)``: the sign of ``b`` is flipped, so ``--b 1.0`` in ``train_NQ_AR2.sh``
  centres the kernel *below* the positive, at ``s⁺ - b``.
* ``kernel="laplace"`` — ``SimANS/utils/MARCO_until_new.py`` (MS MARCO passage) uses
  ``exp(-a · |s_i - s⁺|)`` with ``a = 3`` (we also shift by ``b``; ``b = 0`` is the released code).

Faithful details: negatives are drawn **without replacement** (the released code calls
``random.choices`` and removes each pick, SimXNS issue #7); when the positive was not retrieved the
code has no positive score and falls back to the **lowest-ranked** candidates (``fallback="lowest"``).
retrlab's pools always know the positive's score, so ``fallback="kernel"`` keeps the kernel instead.

Deviation on purpose: the weights are computed in log space (a softmax over ``-a·(Δ-b)²``), so
dot-product scores in the tens (where ``exp`` of the raw kernel underflows to 0 for every candidate,
SimXNS issue #7) still give finite weights that sum to one. ``a`` and ``b`` live on the score
scale: with cosine scores (MiniLM, differences of a few tenths) ``a`` must be in the hundreds to
be selective; the paper's ``a = 0.5`` was set for dot products in the tens.
"""
from __future__ import annotations

import math
import random
from typing import Literal

import numpy as np

from retrlab.negatives.uniform import Sampler
from retrlab.pool import CandidatePool

Kernel = Literal["gaussian", "gaussian-code", "laplace"]
KERNELS: tuple[str, ...] = ("gaussian", "gaussian-code", "laplace")


def simans_logits(scores: np.ndarray, positive_score: float, a: float = 0.5, b: float = 0.0,
                  kernel: Kernel = "gaussian") -> np.ndarray:
    """(k,) unnormalised log-weights ``log p_i + const`` of each candidate (the kernel's exponent)."""
    if a < 0 or not math.isfinite(a):
        raise ValueError(f"a must be a finite number >= 0, got {a}")
    if not math.isfinite(b):
        raise ValueError(f"b must be finite, got {b}")
    scores = np.asarray(scores, dtype=np.float64)
    if not np.isfinite(scores).all() or not math.isfinite(positive_score):
        raise ValueError("scores and the positive's score must be finite")
    delta = scores - positive_score  # (k,) how far each candidate scores from the positive
    if kernel == "gaussian":
        return -a * (delta - b) ** 2
    if kernel == "gaussian-code":
        return -a * (delta + b) ** 2
    if kernel == "laplace":
        return -a * np.abs(delta - b)
    raise ValueError(f"unknown kernel {kernel!r}; choose one of {KERNELS}")


def simans_weights(scores: np.ndarray, positive_score: float, a: float = 0.5, b: float = 0.0,
                   kernel: Kernel = "gaussian") -> np.ndarray:
    """(k,) sampling probabilities p_i (sum to 1): a softmax of the log-weights, never all zero."""
    logits = simans_logits(scores, positive_score, a, b, kernel)
    if len(logits) == 0:
        return logits
    weights = np.exp(logits - logits.max())  # the largest weight is exp(0) = 1: no underflow to 0/0
    return weights / weights.sum()


def sample_without_replacement(weights: np.ndarray, n: int, rng: random.Random) -> list[int]:
    """Indices of ``n`` successive draws, each from the renormalised weights of what is left.

    This is what the released code does (``random.choices`` of one, then remove it). Weights that
    underflowed to 0 are only drawn once every positive weight is used up (then uniformly).
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    w = np.array(weights, dtype=np.float64)  # (k,) a copy: drawn entries are zeroed
    if not (np.isfinite(w).all() and (w >= 0).all()):
        raise ValueError(f"sampling weights must be finite and >= 0, got {weights}")
    left = np.ones(len(w), dtype=bool)
    picked: list[int] = []
    for _ in range(min(n, len(w))):
        cumulative = np.cumsum(w)
        if cumulative[-1] > 0:
            j = int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))
            j = min(j, int(np.flatnonzero(w)[-1]))  # guard the r == total rounding edge
        else:  # every remaining weight underflowed: uniform over what is left
            j = int(np.flatnonzero(left)[int(rng.random() * left.sum())])
        picked.append(j)
        w[j], left[j] = 0.0, False
    return picked


def simans_negatives(pool: CandidatePool, n: int = 1, a: float = 0.5, b: float = 0.0,
                     depth: int | None = 100, kernel: Kernel = "gaussian",
                     fallback: Literal["lowest", "kernel"] = "lowest") -> Sampler:
    """Sampler ``(qid, rng) -> pids``: ``n`` SimANS negatives from each query's top-``depth`` candidates.

    The pool has already removed the labelled positives, so a positive is never drawn.
    ``fallback``: what to do when the positive was not retrieved (``pool.positive_ranks == 0``):
    ``"lowest"`` takes the ``n`` lowest-ranked candidates (util_wiki.py), ``"kernel"`` samples anyway.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if depth is not None and depth < 1:
        raise ValueError(f"depth must be >= 1 (or None for the whole pool), got {depth}")
    if fallback not in ("lowest", "kernel"):
        raise ValueError(f"fallback must be 'lowest' or 'kernel', got {fallback!r}")
    simans_logits(np.zeros(1), 0.0, a, b, kernel)  # validate a, b and kernel now, not at step 1

    def strategy(qid: str, rng: random.Random) -> list[str]:
        i = pool.index(qid)
        pids, scores = pool.pids[i][:depth], pool.scores[i][:depth]
        if fallback == "lowest" and pool.positive_ranks[i] == 0:
            return pids[::-1][:n]
        weights = simans_weights(scores, float(pool.positive_scores[i]), a, b, kernel)
        return [pids[j] for j in sample_without_replacement(weights, n, rng)]

    return strategy


def top_k_negatives(pool: CandidatePool, n: int = 1) -> Sampler:
    """Sampler: always the ``n`` highest-scoring candidates (the hardest, and the likeliest false negatives)."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")

    def strategy(qid: str, rng: random.Random) -> list[str]:
        return pool.candidates(qid)[0][:n]

    return strategy
