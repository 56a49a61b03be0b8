"""The pure functions behind the similarity widgets: what each sampling rule picks, and how often wrongly.

The widgets in ``retrlab.viz.widgets`` only draw what these return, so a test (or an exercise) can
call them directly. Every rule is the package's own strategy (``retrlab.negatives``), called the
way the training loop calls it: one copy of each rule, no drift between the picture and training.

Kinds of candidate (``retrlab.viz.plots.COLORS``): the labelled positive is not in the pool (the
pool removed it); each candidate is a "hidden positive" (relevant by the ground truth, a false
negative a miner cannot see) or a "negative".

Zones on the score axis (``ambiguous_band``, ``zone_counts``), on the gap Δ = s(q, d) − s(q, d⁺):
"ambiguous" is the band where the SimANS kernel's weight is at least ``ZONE_FRACTION`` of its peak
(the kernel's full width at half maximum), "too easy" lies below it, "too hard" above it.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import numpy as np

from retrlab.data.dataset import RetrievalData
from retrlab.negatives.denoise import keep_as_negative
from retrlab.negatives.margin import margin_keep_mask, margin_negatives
from retrlab.negatives.simans import Kernel, simans_logits, simans_negatives, simans_weights, top_k_negatives
from retrlab.negatives.uniform import Sampler, uniform_from_pool
from retrlab.pool import CandidatePool

RULES = ("top-k", "uniform", "SimANS", "margin", "cross-encoder")
ZONES = ("too easy", "ambiguous", "too hard")
ZONE_FRACTION = 0.5  # "ambiguous": the kernel's weight is at least half its peak (full width at half maximum)


@dataclass
class Settings:
    """The knobs of every rule; the widgets' sliders map one to one onto these fields."""
    a: float = 100.0  # SimANS kernel sharpness (on the score scale of the pool)
    b: float = 0.0  # SimANS kernel shift relative to the positive's score
    depth: int = 50  # k: candidates considered (top-k of the pool)
    n: int = 3  # negatives picked per query
    kernel: Kernel = "gaussian"
    absolute_margin: float | None = 0.05
    relative_margin: float | None = None
    ce_threshold: float = 0.5  # cross-encoder veto: a candidate stays a negative only if P(relevant) < it
    seed: int = 0

    def __post_init__(self) -> None:
        if self.depth < 1:
            raise ValueError(f"depth (k) must be >= 1, got {self.depth}")
        if not 0 <= self.n <= self.depth:
            raise ValueError(f"n must be between 0 and depth (k) = {self.depth}, got {self.n}")
        if not 0 <= self.ce_threshold <= 1:
            raise ValueError(f"ce_threshold must be in [0, 1], got {self.ce_threshold}")
        simans_logits(np.zeros(1), 0.0, self.a, self.b, self.kernel)  # validates a, b, kernel
        margin_keep_mask(np.zeros(1), 0.0, self.absolute_margin, self.relative_margin)


def rule_strategies(pool: CandidatePool, s: Settings,
                    ce_probabilities: dict[str, np.ndarray] | None = None) -> dict[str, Sampler]:
    """The strategy of each rule for these settings (cross-encoder only when probabilities are given)."""
    rules = {
        "top-k": top_k_negatives(pool, s.n),
        "uniform": uniform_from_pool(pool, s.n, s.depth),
        "SimANS": simans_negatives(pool, s.n, s.a, s.b, s.depth, s.kernel),
        "margin": margin_negatives(pool, s.n, s.absolute_margin, s.relative_margin, s.depth),
    }
    if ce_probabilities is not None:
        rules["cross-encoder"] = threshold_negatives(pool, ce_probabilities, s.n, s.ce_threshold, s.depth)
    return rules


def threshold_negatives(pool: CandidatePool, probabilities: dict[str, np.ndarray], n: int,
                        threshold: float, depth: int | None) -> Sampler:
    """The best ``n`` scored candidates the cross-encoder keeps as negatives (RocketQA's veto).

    ``probabilities[qid]`` holds P(relevant) of the query's first ``len(...)`` pool candidates;
    the rule is ``retrlab.negatives.denoise.keep_as_negative`` (kept only if p < ``threshold``).
    Unscored candidates are never picked: the veto cannot vouch for them.
    """
    def strategy(qid: str, rng: random.Random) -> list[str]:
        pids = pool.candidates(qid)[0][:depth]
        kept = keep_as_negative(np.asarray(probabilities[qid])[:len(pids)], threshold)
        return [pid for pid, keep in zip(pids, kept) if keep][:n]

    return strategy


def ambiguous_band(a: float, b: float, kernel: Kernel = "gaussian",
                   fraction: float = ZONE_FRACTION) -> tuple[float, float]:
    """(low, high) on Δ = s(q, d) − s(q, d⁺): where the kernel's weight is >= ``fraction`` of its peak.

    From ``simans_logits`` (log-weight ``-a·g(Δ - c)``, peak 0 at the centre c): the band is
    ``log-weight >= log(fraction)``, i.e. ``|Δ - c| <= w`` with ``w = sqrt(ln(1/fraction) / a)`` for
    the Gaussian kernels and ``ln(1/fraction) / a`` for the Laplace one; c = b, or −b for
    "gaussian-code" (the released code's sign). ``a = 0`` is a flat kernel: everything is ambiguous.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    simans_logits(np.zeros(1), 0.0, a, b, kernel)  # validates a, b and kernel
    centre = -b if kernel == "gaussian-code" else b
    if a == 0:
        return -np.inf, np.inf
    depth = math.log(1 / fraction)  # how far below the peak the band's edges are, in log-weight
    width = depth / a if kernel == "laplace" else math.sqrt(depth / a)
    return centre - width, centre + width


def zone_of(deltas: np.ndarray, band: tuple[float, float]) -> np.ndarray:
    """(k,) zone index per gap Δ: 0 "too easy" (below the band), 1 "ambiguous" (inside, edges included), 2 "too hard"."""
    deltas = np.asarray(deltas, dtype=np.float64)
    return np.where(deltas < band[0], 0, np.where(deltas > band[1], 2, 1))


def zone_counts(margins: dict[str, np.ndarray], band: tuple[float, float]) -> dict[str, dict[str, int]]:
    """zone -> kind -> how many candidates: ``margins`` maps a kind to its gaps Δ (``score_margins``)."""
    zones = {kind: zone_of(deltas, band) for kind, deltas in margins.items()}
    return {zone: {kind: int((z == i).sum()) for kind, z in zones.items()} for i, zone in enumerate(ZONES)}


@dataclass
class QueryView:
    """One query's top-``depth`` candidates and, for each rule, its picks and pick probabilities."""
    qid: str
    query: str
    positive_pid: str
    positive_score: float
    positive_rank: int  # 1-based rank of the labelled positive, 0 = not retrieved
    pids: list[str]
    scores: np.ndarray  # (k,)
    hidden: np.ndarray  # (k,) bool, ground truth
    texts: list[str]
    probabilities: dict[str, np.ndarray] = field(default_factory=dict)  # rule -> (k,) chance of a pick
    picks: dict[str, list[str]] = field(default_factory=dict)  # rule -> picked pids
    kept: dict[str, np.ndarray] = field(default_factory=dict)  # filter rule -> (k,) bool survives
    ce_probabilities: np.ndarray | None = None  # (m,) cross-encoder P(relevant) of the first m <= k candidates

    @property
    def kinds(self) -> list[str]:
        return ["hidden positive" if h else "negative" for h in self.hidden]

    @property
    def margins(self) -> np.ndarray:
        """(k,) s(q, d_i) - s(q, d⁺)."""
        return self.scores - self.positive_score

    def false_negatives(self, rule: str) -> int:
        """How many of ``rule``'s picks are hidden positives."""
        flags = dict(zip(self.pids, self.hidden))
        return sum(bool(flags[p]) for p in self.picks[rule])

    def zone_counts(self, band: tuple[float, float]) -> dict[str, dict[str, int]]:
        """zone -> kind -> how many of this query's shown candidates fall there."""
        return zone_counts({"hidden positive": self.margins[self.hidden], "negative": self.margins[~self.hidden]}, band)

    def veto(self) -> dict[str, int]:
        """The cross-encoder row: scored candidates, how many it drops, and the hidden positives among them."""
        if self.ce_probabilities is None:
            raise ValueError("no cross-encoder probabilities were given for this view")
        m = len(self.ce_probabilities)
        dropped = ~self.kept["cross-encoder"][:m]
        return {"scored": m, "dropped": int(dropped.sum()), "hidden": int(self.hidden[:m].sum()),
                "caught": int((dropped & self.hidden[:m]).sum())}


def explore_query(pool: CandidatePool, data: RetrievalData, qid: str, s: Settings,
                  ce_probabilities: dict[str, np.ndarray] | None = None) -> QueryView:
    """Everything the similarity explorer shows for one query (raises KeyError for an unknown qid)."""
    i = pool.index(qid)
    pids, scores, hidden = pool.pids[i][:s.depth], pool.scores[i][:s.depth], pool.hidden[i][:s.depth]
    k, s_pos = len(pids), float(pool.positive_scores[i])
    view = QueryView(qid, data.queries[qid], data.positives[qid][0], s_pos, int(pool.positive_ranks[i]),
                     list(pids), np.asarray(scores), np.asarray(hidden), data.passage_texts(list(pids)))
    for rule, strategy in rule_strategies(pool, s, ce_probabilities).items():
        view.picks[rule] = strategy(qid, random.Random(s.seed))
    in_top = np.arange(k) < s.n
    view.probabilities["top-k"] = in_top.astype(float)
    view.probabilities["uniform"] = np.full(k, min(s.n, k) / k if k else 0.0)  # chance to be among the n
    if view.positive_rank == 0:  # positive not retrieved: simans_negatives falls back to the n lowest-ranked
        view.probabilities["SimANS"] = (np.arange(k) >= k - s.n).astype(float)
    else:
        view.probabilities["SimANS"] = simans_weights(scores, s_pos, s.a, s.b, s.kernel)  # first-draw chance
    view.kept["margin"] = margin_keep_mask(scores, s_pos, s.absolute_margin, s.relative_margin)
    if ce_probabilities is not None:
        view.ce_probabilities = np.asarray(ce_probabilities[qid], dtype=np.float64)[:k]
        scored = keep_as_negative(view.ce_probabilities, s.ce_threshold)  # unscored candidates: never kept
        view.kept["cross-encoder"] = np.concatenate([scored, np.zeros(k - len(scored), dtype=bool)])
    for rule, kept in view.kept.items():  # the filters take the best n survivors ("top" sampling)
        view.probabilities[rule] = (kept & (np.cumsum(kept) <= s.n)).astype(float)
    return view


def score_margins(pool: CandidatePool, depth: int | None = None) -> dict[str, np.ndarray]:
    """s(q, d) - s(q, d⁺) of every top-``depth`` candidate of every query, split by kind."""
    deltas = [pool.scores[i][:depth] - pool.positive_scores[i] for i in range(len(pool))]
    flags = [pool.hidden[i][:depth] for i in range(len(pool))]
    d, h = np.concatenate(deltas), np.concatenate(flags)
    return {"hidden positive": d[h], "negative": d[~h]}


def kernel_curve(deltas: np.ndarray, a: float, b: float, kernel: Kernel = "gaussian") -> np.ndarray:
    """The SimANS kernel exp(-a·(Δ - b)²) at the given margins Δ, unnormalised (peak 1)."""
    return np.exp(simans_logits(deltas, 0.0, a, b, kernel))


def pick_false_negative_rates(pool: CandidatePool, strategies: dict[str, Sampler],
                              seed: int = 0) -> dict[str, float]:
    """For each rule, the fraction of its picks over all pool queries that are hidden positives."""
    hidden = [dict(zip(pool.pids[i], pool.hidden[i])) for i in range(len(pool))]
    rates = {}
    for name, strategy in strategies.items():
        rng = random.Random(seed)
        flags = [bool(hidden[i][p]) for i, q in enumerate(pool.qids) for p in strategy(q, rng)]
        rates[name] = sum(flags) / len(flags) if flags else 0.0
    return rates
