"""Is a gap real? Paired comparisons over queries and spreads over seeds.

Small test sets make small gaps noisy: with ~300 test queries an MRR@10 difference of 0.02 is
often inside the noise. ``paired_bootstrap`` resamples queries (both systems on the same
resampled queries, Efron & Tibshirani 1993; Sakai 2006 for IR) and reports a 95% interval of the
mean difference; ``verdict`` turns it into the sentence a notebook prints.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from retrlab.metrics import evaluate


@dataclass
class Comparison:
    measure: str
    a: str
    b: str
    mean_a: float
    mean_b: float
    low: float  # 2.5th percentile of the bootstrapped mean difference a - b
    high: float  # 97.5th percentile

    @property
    def difference(self) -> float:
        return self.mean_a - self.mean_b

    @property
    def significant(self) -> bool:
        return self.low > 0 or self.high < 0

    def robust(self, seed_spread: float) -> bool:
        """Notebook 14's rule: significant over queries *and* larger than the seed spread (the two
        systems' standard deviations over seeds, added)."""
        return self.significant and abs(self.difference) > seed_spread

    def verdict(self) -> str:
        """One sentence, the better system first (its mean, the gap and the interval from its side)."""
        flip = self.difference < 0
        first, second = (self.b, self.a) if flip else (self.a, self.b)
        m1, m2 = (self.mean_b, self.mean_a) if flip else (self.mean_a, self.mean_b)
        low, high = (-self.high, -self.low) if flip else (self.low, self.high)
        gap = f"{self.measure} {m1:.3f} vs {m2:.3f} (Δ = {m1 - m2:+.3f}, 95% CI [{low:+.3f}, {high:+.3f}])"
        if not self.significant:
            return f"{first} and {second} are within noise here: {gap}"
        return f"{first} beats {second}: {gap}"


def per_query(run: dict, qrels: dict, measure: str) -> dict[str, float]:
    return {q: v[measure] for q, v in evaluate(run, qrels, [measure], per_query=True).items()}


def paired_bootstrap(values_a: dict[str, float], values_b: dict[str, float], *, a: str = "A",
                     b: str = "B", measure: str = "metric", samples: int = 2000,
                     seed: int = 0) -> Comparison:
    """Bootstrap the mean per-query difference ``a - b`` over the queries both systems share."""
    qids = sorted(set(values_a) & set(values_b))
    if not qids:
        raise ValueError("the two systems share no query")
    diff = np.array([values_a[q] - values_b[q] for q in qids])
    if not np.isfinite(diff).all():
        bad = [q for q, d in zip(qids, diff) if not np.isfinite(d)]
        raise ValueError(f"per-query values must be finite; NaN or infinite for {bad[:3]}")
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(samples, len(diff)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return Comparison(measure, a, b, float(np.mean([values_a[q] for q in qids])),
                      float(np.mean([values_b[q] for q in qids])), float(low), float(high))


def compare_runs(run_a: dict, run_b: dict, qrels: dict, measure: str = "MRR@10", *, a: str = "A",
                 b: str = "B", seed: int = 0) -> Comparison:
    """Paired bootstrap of two runs on the same queries."""
    return paired_bootstrap(per_query(run_a, qrels, measure), per_query(run_b, qrels, measure),
                            a=a, b=b, measure=measure, seed=seed)


def compare_seeds(runs_a: list[dict], runs_b: list[dict], qrels: dict, measure: str = "MRR@10", *,
                  a: str = "A", b: str = "B", seed: int = 0) -> tuple[Comparison, float]:
    """Two systems trained with several seeds (one run per seed): the paired bootstrap of their per-query
    scores averaged over the seeds, and the seed spread, each system's standard deviation over seeds of
    its mean score, added (0 for a system that ran once: a fixed model no training seed moves)."""
    if not runs_a or not runs_b:
        raise ValueError("compare_seeds needs at least one run of each system")
    per_a, per_b = ([per_query(run, qrels, measure) for run in runs] for runs in (runs_a, runs_b))
    comparison = paired_bootstrap(_seed_average(per_a), _seed_average(per_b), a=a, b=b, measure=measure, seed=seed)
    return comparison, _seed_std(per_a) + _seed_std(per_b)


def _seed_average(per_seed: list[dict[str, float]]) -> dict[str, float]:
    """Per-query score averaged over seeds."""
    return {q: float(np.mean([scores[q] for scores in per_seed])) for q in per_seed[0]}


def _seed_std(per_seed: list[dict[str, float]]) -> float:
    """Standard deviation over seeds of the mean per-query score (0 for a single seed)."""
    means = [float(np.mean(list(v.values()))) for v in per_seed]
    return float(np.std(means, ddof=1)) if len(means) > 1 else 0.0


def mean_std(values: list[float]) -> str:
    """'0.712 ± 0.011' (sample std over seeds), or the single value when only one seed ran."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0 or not np.isfinite(values).all():
        raise ValueError(f"mean_std needs at least one finite value, got {values.tolist()}")
    if len(values) < 2:
        return f"{values.mean():.3f}"
    return f"{values.mean():.3f} ± {values.std(ddof=1):.3f}"
