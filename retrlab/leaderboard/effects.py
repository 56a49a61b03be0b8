"""The paper-effects table: each effect a paper reports, measured as a gap between two leaderboard rows.

A paper effect is a claim of the form "method beats baseline by so much" (DPR's BM25 negative over
in-batch, STAR over in-batch, ANCE's refresh over static BM25 negatives, ADORE over its STAR start,
RocketQA's denoising, AR2 over ANCE, SimANS over plain top-k sampling). On a leaderboard run the
same pair is two rows, so the effect becomes our gap with its noise:

* **gap** — method minus baseline, test MRR@10, each averaged over the run's seeds;
* **95% CI** — paired bootstrap over test queries (``Leaderboard.compare``);
* **seed spread** — the two rows' standard deviations over seeds, added;
* **verdict** — ``reproduced`` (robust gap with the paper's sign), ``opposite`` (robust gap with the
  other sign) or ``not reproduced`` (within noise), and the measured quantity that explains it:
  the noise itself, or how many hidden positives the method's negatives held.

The paper gaps are MS MARCO passage dev MRR@10 (DPR's is NQ top-20 accuracy), from the tables named
in ``source``; docs/methods.md gives each method's numbers.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from retrlab.leaderboard.board import Leaderboard


@dataclass(frozen=True)
class PaperEffect:
    name: str  # the effect, in words
    method: str  # leaderboard strategy
    baseline: str  # leaderboard strategy or reference row
    paper_gap: float  # what the paper reports for method - baseline
    source: str  # where the paper reports it
    notebook: str  # the notebook that teaches it


EFFECTS: tuple[PaperEffect, ...] = (
    PaperEffect("DPR: one BM25 hard negative beats in-batch only", "bm25", "inbatch", +5.0,
                "DPR Table 3, NQ dev top-20 73.0 -> 78.0 (accuracy points)", "01"),
    PaperEffect("STAR: static hard + random negatives beat in-batch only", "star", "inbatch", +0.076,
                "STAR README, MRR@10 0.264 -> 0.340", "02"),
    PaperEffect("ANCE: refreshed negatives beat static BM25 negatives", "ance", "bm25", +0.031,
                "ANCE Table 1, MRR@10 0.299 -> 0.330", "03"),
    PaperEffect("ADORE: live top-k on the query tower improves its STAR start", "adore", "STAR (ADORE's start)",
                +0.007, "ADORE README, MRR@10 0.340 -> 0.347", "04"),
    PaperEffect("RocketQA: denoised hard negatives beat un-denoised ones", "rocketqa-denoised", "rocketqa-hard",
                +0.104, "RocketQA README, MRR@10 0.260 -> 0.364", "05"),
    PaperEffect("AR2: the adversarial ranker game beats ANCE", "ar2", "ance", +0.065,
                "AR2 Table 2, MRR@10 0.330 -> 0.395 (AR2 starts from coCondenser)", "06"),
    PaperEffect("SimANS: ambiguous negatives beat top-k negatives", "simans", "topk", +0.014,
                "SimANS main table, AR2 0.395 -> AR2+SimANS 0.409", "07"),
)


@dataclass(frozen=True)
class EffectRow:
    effect: PaperEffect
    gap: float  # ours: method - baseline, test MRR@10 averaged over seeds
    low: float  # paired-bootstrap 95% interval of the gap
    high: float
    spread: float  # the two rows' seed standard deviations, added (0 for a single seed)
    robust: bool  # interval excludes 0 and |gap| > spread
    verdict: str  # "reproduced", "opposite" or "not reproduced"
    because: str  # the measured reason

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def _fn_rate(board: Leaderboard, name: str) -> float | None:
    """Mean share of hidden positives among the negatives ``name`` trained on (None: no extra negatives)."""
    rates = [r.fn_rate for r in board.rows(name) if r.fn_rate is not None]
    return float(np.mean(rates)) if rates else None


def _reason(board: Leaderboard, effect: PaperEffect, row_gap: float, low: float, high: float,
            spread: float, robust: bool) -> str:
    if not robust:
        return f"within noise at this budget (CI [{low:+.3f}, {high:+.3f}], seed spread ±{spread:.3f})"
    fn_method, fn_base = _fn_rate(board, effect.method), _fn_rate(board, effect.baseline)
    shares = ", ".join(f"{name} {share:.0%}" for name, share in
                       [(effect.method, fn_method), (effect.baseline, fn_base)] if share is not None)
    return f"robust gap {row_gap:+.3f}" + (f"; hidden positives among the negatives: {shares}" if shares else "")


def measure_effect(board: Leaderboard, effect: PaperEffect, measure: str = "MRR@10") -> EffectRow:
    """One effect on one leaderboard: our gap, its interval and seed spread, the verdict and why."""
    comparison, robust, _ = board.compare(effect.method, effect.baseline, measure)
    gap = comparison.difference
    spread = board.seed_spread(effect.method, effect.baseline, measure)
    same_sign = np.sign(gap) == np.sign(effect.paper_gap)
    verdict = "not reproduced" if not robust else ("reproduced" if same_sign else "opposite")
    return EffectRow(effect, gap, comparison.low, comparison.high, spread, robust, verdict,
                     _reason(board, effect, gap, comparison.low, comparison.high, spread, robust))


def effects_table(board: Leaderboard, effects: tuple[PaperEffect, ...] = EFFECTS,
                  measure: str = "MRR@10") -> list[EffectRow]:
    """Every effect whose two rows the board holds (an effect with a missing row is skipped)."""
    held = set(board.strategies()) | {r.strategy for r in board.references}
    return [measure_effect(board, e, measure) for e in effects if {e.method, e.baseline} <= held]


def effects_markdown(rows: list[EffectRow]) -> str:
    """The table as markdown: effect, paper gap, our gap with CI and seed spread, verdict and reason."""
    lines = ["| effect | notebook | paper | ours (test MRR@10) | 95% CI | seed spread | verdict |",
             "| --- | --- | --- | ---: | --- | ---: | --- |"]
    for r in rows:
        e = r.effect
        lines.append(f"| {e.name} | {e.notebook} | {e.paper_gap:+g} ({e.source}) | {r.gap:+.3f} | "
                     f"[{r.low:+.3f}, {r.high:+.3f}] | ±{r.spread:.3f} | {r.verdict}: {r.because} |")
    return "\n".join(lines)
