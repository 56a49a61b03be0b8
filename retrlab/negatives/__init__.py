"""Negative-sampling strategies: each one a small function over a candidate pool (``retrlab.pool``).

A strategy is ``(qid, rng) -> list[pid]``, the negatives a query trains with this step; the
training loop (``retrlab.train``) calls it for every query of every batch.
"""
from retrlab.negatives.uniform import RecordingStrategy, random_negatives, uniform_from_pool

__all__ = ["RecordingStrategy", "random_negatives", "uniform_from_pool"]
