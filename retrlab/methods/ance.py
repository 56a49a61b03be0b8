"""ANCE: negatives from the *current* model's own retrieval, refreshed every M steps.

Xiong et al., *Approximate Nearest Neighbor Negative Contrastive Learning for Dense Text
Retrieval*, ICLR 2021; official code microsoft/ANCE: ``drivers/run_ann_data_gen.py`` (the
inferencer: encode the corpus with the newest checkpoint, ``faiss.IndexFlatIP``, top-200 per
training query, drop the labelled positive, sample negatives uniformly) and ``drivers/run_ann.py``
(the trainer: switches to the newest negatives file; pairwise ``NLL`` loss in ``model/models.py``).

In the paper the inferencer runs *asynchronously* on its own GPUs: while checkpoint f_k is being
encoded, the trainer keeps drawing negatives mined with f_{k-1}, so negatives are always a little
stale. Here the loop is synchronous (training pauses while the corpus is re-encoded), which is
ANCE with a zero-latency inferencer; staleness then comes from the refresh interval M alone.

* ``refresh_due(step, every)`` — the schedule, a pure function.
* ``AnceNegatives`` — holds the current pool; is the strategy (``(qid, rng) -> [pid]``, uniform
  from the current top-K) and gives the ``Hook`` that refreshes the pool, logging the cost of each
  refresh, the overlap of the negatives trained on with the new top-K, and their false-negative
  rate (measured with wiki-car's ground truth, which the strategy itself never reads).
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass

from retrlab.data.dataset import RetrievalData
from retrlab.encoders import BiEncoder
from retrlab.pool import CandidatePool, dense_pool, false_negative_rate
from retrlab.train import Hook


def refresh_due(step: int, every: int | None) -> bool:
    """True when the index is rebuilt after ``step`` (1-based): every ``every`` steps; never for None/0."""
    if every is not None and every < 0:
        raise ValueError(f"refresh interval must be >= 0 or None, got {every}")
    return bool(every) and step > 0 and step % every == 0


def compute_overlap(picks: list[tuple[str, list[str]]], pool: CandidatePool, depth: int) -> float:
    """Fraction of the negatives in ``picks`` that lie in ``pool``'s top-``depth`` for their query.

    ANCE's Table/Fig. "overlap with the DR model's negatives at test time": 15% for BM25
    negatives, 63-100% for ANCE's. ``picks`` is a list of (qid, negatives) as recorded in training.
    """
    hits = [pid in set(pool.pids[pool.index(qid)][:depth]) for qid, negs in picks for pid in negs]
    return sum(hits) / len(hits) if hits else float("nan")


@dataclass
class RefreshLog:
    step: int
    seconds: float  # re-encode the corpus + build the index + search the training queries
    overlap: float  # negatives used since the last refresh that are in the new top-K
    picks_fn_rate: float  # of those negatives, the share that are hidden positives
    pool_fn_rate: float  # hidden positives among the new pool's top-K


class AnceNegatives:
    """The pool ANCE samples from, and the hook that re-mines it with the current model."""

    def __init__(self, data: RetrievalData, pool: CandidatePool, depth: int = 200, n: int = 1,
                 split: str = "train") -> None:
        if depth < 1 or n < 1:
            raise ValueError(f"depth and n must be >= 1, got depth={depth}, n={n}")
        self.data, self.pool, self.depth, self.n, self.split = data, pool, depth, n, split
        self.picks: list[tuple[str, list[str]]] = []  # negatives drawn since the last refresh
        self.log: list[RefreshLog] = []

    def __call__(self, qid: str, rng: random.Random) -> list[str]:
        """Uniform draw from the current top-``depth`` (labelled positives already removed)."""
        candidates = self.pool.candidates(qid)[0][:self.depth]
        negatives = rng.sample(candidates, min(self.n, len(candidates)))
        self.picks.append((qid, negatives))
        return negatives

    def refresh(self, model: BiEncoder, step: int = 0) -> RefreshLog:
        """Re-encode the split's corpus with ``model``, rebuild the index, re-mine the top-K."""
        started = time.perf_counter()
        new_pool = dense_pool(model, self.data, self.split, depth=self.depth, source=f"step {step}")
        seconds = time.perf_counter() - started
        entry = RefreshLog(step, seconds, compute_overlap(self.picks, new_pool, self.depth),
                           false_negative_rate(self.picks, self.data.qrels),
                           new_pool.false_negative_rate(self.depth))
        self.pool, self.picks = new_pool, []
        self.log.append(entry)
        return entry

    def hook(self, every: int | None, last_step: int) -> Hook:
        """A ``Hook`` checked each step; refreshes when ``refresh_due`` and training goes on."""
        def fn(step: int, model: BiEncoder) -> dict | None:
            if not refresh_due(step, every) or step >= last_step:
                return None
            entry = self.refresh(model, step)
            return {"refresh_seconds": entry.seconds, "overlap": entry.overlap}

        return Hook(1, fn)
