"""The two simplest samplers: random passages, and a uniform draw from a pool's top candidates.

* ``random_negatives`` — any passage that is not a labelled positive (ANCE's "Rand Neg" baseline).
* ``uniform_from_pool`` — a uniform draw from the top-``depth`` candidates of a pool (optionally
  skipping the first ``skip``). With a BM25 pool this is DPR's hard negative (Karpukhin et al. 2020:
  "a top BM25 passage that does not contain the answer"; DPR's ``create_biencoder_input`` shuffles
  the BM25 negatives and takes the first). With a warm-up model's pool it is STAR's static hard
  negative; with a refreshed pool, ANCE's; from ranks 11-50, RocketQA's refill without its filter.

Neither looks at the ground truth: hidden positives in the pool are sampled like any negative.
``RecordingSampler`` wraps a sampler to remember what it returned, so a notebook can measure
afterwards how many of the negatives a model *actually trained on* were false negatives.
"""
from __future__ import annotations

import random

from retrlab.data.dataset import RetrievalData
from retrlab.pool import CandidatePool, false_negative_rate
from retrlab.train import Sampler


def uniform_from_pool(pool: CandidatePool, n: int = 1, depth: int | None = None, skip: int = 0) -> Sampler:
    """``n`` distinct negatives drawn uniformly from each query's pool candidates ranked ``skip + 1`` to
    ``depth`` (default: the top-``depth``; ``skip=10, depth=50`` is RocketQA's refill window)."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if depth is not None and depth < 1:
        raise ValueError(f"depth must be >= 1 (or None for the whole pool), got {depth}")
    if skip < 0 or (depth is not None and skip >= depth):
        raise ValueError(f"skip must be >= 0 and below depth ({depth}), got {skip}")

    def sampler(qid: str, rng: random.Random) -> list[str]:
        candidates = pool.candidates(qid)[0][skip:depth]
        return rng.sample(candidates, min(n, len(candidates)))

    return sampler


def random_negatives(data: RetrievalData, n: int = 1, split: str = "train") -> Sampler:
    """``n`` passages drawn uniformly from the split's corpus, labelled positives excluded."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    pids = data.search_pids(split)
    searchable = set(pids)

    def strategy(qid: str, rng: random.Random) -> list[str]:
        labelled = set(data.positives[qid])
        if n > len(pids) - len(labelled & searchable):  # the loop below would never end
            raise ValueError(f"cannot draw {n} negatives for query {qid!r}: the {split} corpus has only "
                             f"{len(pids) - len(labelled & searchable)} passages that are not its positives")
        picked: list[str] = []
        while len(picked) < n:
            pid = rng.choice(pids)
            if pid not in labelled and pid not in picked:
                picked.append(pid)
        return picked

    return strategy


class RecordingSampler:
    """Wrap a sampler and keep every (qid, negatives) it returns, in call order."""

    def __init__(self, sampler: Sampler) -> None:
        self.sampler = sampler
        self.picks: list[tuple[str, list[str]]] = []

    def __call__(self, qid: str, rng: random.Random) -> list[str]:
        negatives = self.sampler(qid, rng)
        self.picks.append((qid, negatives))
        return negatives

    def false_negative_rate(self, data: RetrievalData) -> float:
        """Fraction of the recorded negatives that are relevant by the ground truth."""
        return false_negative_rate(self.picks, data.qrels)
