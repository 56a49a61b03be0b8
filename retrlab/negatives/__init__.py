"""Samplers: each one a small function over a candidate pool (``retrlab.pool``) that returns pids.

A sampler is ``(qid, rng) -> list[pid]`` (``retrlab.train.Sampler``), the negatives a query trains
with this step; the engine's bi-encoder loop calls it for every query of every batch.

* ``uniform`` — random passages, a uniform draw from a pool's top-k, ``RecordingSampler``;
* ``margin`` — drop candidates scoring within a margin of the positive (positive-aware mining);
* ``denoise`` — RocketQA's cross-encoder threshold;
* ``simans`` — SimANS' ambiguity kernel, and the plain top-k.

Whole methods (a loop, a step, a refresh) are in ``retrlab.methods``.
"""
from retrlab.negatives.uniform import RecordingSampler, random_negatives, uniform_from_pool

__all__ = ["RecordingSampler", "random_negatives", "uniform_from_pool"]
